"""When each API token was last used, written at most once a minute per token and never on
the request path: a request only notes the time; a background flush writes the notes of
every token in one small transaction a moment later."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Connection, or_, update

from app.domain.timeutil import MICROS_PER_MINUTE
from app.store.engine import Database
from app.store.models import ApiToken

log = logging.getLogger(__name__)
RECORD_EVERY_MICROS = MICROS_PER_MINUTE  # the contract allows lastUsedAt to lag a minute
FLUSH_DELAY_SECONDS = 1.0  # batches the notes of a burst of requests into one write
MAX_TRACKED = 100_000  # tokens remembered; past it the memory is dropped (costs a few writes)


def write_last_used(conn: Connection, used: dict[int, int]) -> None:
    """Moves each token's last_used_at forward (never back: another process may be ahead)."""
    for token_id, at in used.items():
        conn.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token_id,
                or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < at),
            )
            .values(last_used_at=at)
        )


class UsageRecorder:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._recorded: dict[int, int] = {}  # token id -> the last use written (or read)
        self._pending: dict[int, int] = {}  # token id -> a use still to write
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._closed = False

    def seen(self, token_id: int, last_used_at: int | None) -> None:
        """What the database already holds, so a restarted process does not write it again."""
        if last_used_at is not None and last_used_at > self._recorded.get(token_id, 0):
            self._remember(token_id, last_used_at)

    def used(self, token_id: int, now: int) -> None:
        recorded = self._recorded.get(token_id)
        if recorded is not None and now - recorded < RECORD_EVERY_MICROS:
            return
        self._remember(token_id, now)
        self._pending[token_id] = now
        self._schedule()

    def _remember(self, token_id: int, at: int) -> None:
        if len(self._recorded) >= MAX_TRACKED and token_id not in self._recorded:
            self._recorded.clear()
        self._recorded[token_id] = at

    def _schedule(self) -> None:
        if self._closed or self._timer is not None or self._flushing is not None:
            return  # the running flush reschedules itself for what arrives meanwhile
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(FLUSH_DELAY_SECONDS, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        self._flushing = asyncio.create_task(self._flush(), name="token-usage-flush")

    async def _flush(self) -> None:
        try:
            await self._write()
        finally:
            self._flushing = None
            if self._pending:
                self._schedule()

    async def _write(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            await self._db.run_write(lambda conn: write_last_used(conn, pending))
        except Exception as error:  # a last-use time is not worth failing anything for
            log.warning("could not record the last use of %d token(s): %s", len(pending), error)

    async def close(self) -> None:
        """Writes what is noted (a process stopping keeps its last minute of use)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            await asyncio.wait({self._flushing})  # a write under way finishes (it never raises)
        await self._write()
