"""Revocations reach every API process: each process listens on one broadcast channel for the
whole service (REVOCATIONS_CHANNEL) and, for each revoked token, drops it from its
authenticator's cache and closes its open WebSockets.

An event is confirmed in the database before it closes anything: a broker shared with another
deployment (or another test run) carries token ids that are not ours. When the broker
connection was lost (events may be missing), every cached token is dropped instead, so that
the next request of each reads the database again. Besides, each process looks for recent
revocations in the database every SYNCSTATUS_REVOCATION_POLL_SECONDS: that covers a
revocation by the command line under the in-process broadcast (memory://), which reaches no
other process, and an event the broker lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.domain.timeutil import MICROS_PER_SECOND, now_micros
from app.events.messages import REVOCATIONS_CHANNEL, TokenRevoked, decode_revocation
from app.ops.tasks import cancel_and_wait
from app.store.models import ApiToken

if TYPE_CHECKING:  # handed in by the composition root (app.web.asgi)
    from app.web.services import Services

log = logging.getLogger(__name__)
READY_TIMEOUT = 10.0
CHECK_EVERY = 1.0  # seconds between checks of the broker's reconnections while idle
RETRY_SECONDS = 1.0
# Revocations are looked for this far back: covers commit delays and clocks of other hosts.
POLL_OVERLAP_MICROS = 60 * MICROS_PER_SECOND


def forget_here(services: Services, token_id: int) -> None:
    """Applies a committed revocation on this process."""
    services.authenticator.revoked(token_id)
    services.sockets.revoked(token_id)


async def _confirmed(services: Services, event: TokenRevoked) -> bool:
    async with services.db.read() as session:
        revoked_at = await session.scalar(
            select(ApiToken.revoked_at).where(
                ApiToken.id == event.token_id, ApiToken.tenant_id == event.tenant_id
            )
        )
    return revoked_at is not None


def _connection_losses(broadcast: Any) -> int:
    backend = getattr(broadcast, "backend", None)
    return int(getattr(backend, "reconnects", 0)) + int(getattr(backend, "dropped", 0))


async def _listen(services: Services, ready: asyncio.Event) -> None:
    while True:
        try:
            await _receive(services, ready)
        except Exception:
            log.exception("the token revocation feed failed; subscribing again")
            services.authenticator.forget_all()
            await asyncio.sleep(RETRY_SECONDS)


async def _receive(services: Services, ready: asyncio.Event) -> None:
    broadcast = services.broadcast
    async with broadcast.subscribe(REVOCATIONS_CHANNEL) as events:
        ready.set()
        losses = _connection_losses(broadcast)
        while True:
            message = None
            try:
                # asyncio.timeout, not wait_for: wait_for wraps each get() in a task of its own,
                # a new task every CHECK_EVERY for as long as the process serves.
                async with asyncio.timeout(CHECK_EVERY):
                    message = await events.get()
            except TimeoutError:
                pass
            now_losses = _connection_losses(broadcast)
            if now_losses != losses:
                losses = now_losses
                log.warning("the broker connection was lost: dropping cached tokens")
                services.authenticator.forget_all()
            if message is None:
                continue
            try:
                event = decode_revocation(message.message)
                if await _confirmed(services, event):
                    forget_here(services, event.token_id)
            except Exception:
                log.exception("could not apply a token revocation")


async def _poll(services: Services, every: float) -> None:
    applied: dict[int, int] = {}  # token id -> revoked_at, those of the overlap window
    since = now_micros() - POLL_OVERLAP_MICROS
    failing = False
    while True:
        await asyncio.sleep(every)
        now = now_micros()
        try:
            async with services.db.read() as session:
                rows = (
                    await session.execute(
                        select(ApiToken.id, ApiToken.revoked_at).where(ApiToken.revoked_at >= since)
                    )
                ).all()
        except Exception as error:
            if not failing:  # once per outage, not once a second
                log.warning("could not look for revoked tokens: %s", error)
            failing = True
            continue
        failing = False
        for token_id, revoked_at in rows:
            assert revoked_at is not None  # the query's revoked_at >= since
            if token_id not in applied:
                forget_here(services, token_id)
            applied[token_id] = revoked_at
        since = now - POLL_OVERLAP_MICROS
        for token_id in [t for t, at in applied.items() if at < since]:
            del applied[token_id]


@asynccontextmanager
async def listening(services: Services) -> AsyncIterator[None]:
    """This process applies every revocation while the block runs."""
    ready = asyncio.Event()
    task = asyncio.create_task(_listen(services, ready), name="token-revocations")
    every = services.settings.revocation_poll_seconds
    poller = (
        asyncio.create_task(_poll(services, every), name="token-revocations-poll")
        if every > 0
        else None
    )
    try:
        waiting = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait(
            {waiting, task}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        if waiting not in done:
            log.warning("not yet listening for token revocations (is the broker reachable?)")
        yield
    finally:
        await cancel_and_wait(poller)
        await cancel_and_wait(task)
