"""The event log: each tenant's events in commit order, so no process misses one when the
broker loses it (an outage, a publish given up).

A state change appends its tenant events at the end of its own transaction: it advances the
tenant row's ``event_seq`` by the number of events (``UPDATE … RETURNING``) and inserts them
with those sequences. The row's lock is held until commit, so a tenant's sequences commit in
order and without gaps: a process that has seen ``n`` and then sees ``n + 2`` knows exactly
which row to read. The lock is taken last, after the change's own locks, so it is held only
for the insert and the commit and cannot take part in a deadlock (a holder waits for nothing).

Rows are kept ``SYNCSTATUS_EVENT_LOG_SECONDS`` (600 by default), then pruned each minute by
every `serve` process; a process that missed more than that tells its subscribers to refetch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import cast

from sqlalchemy import (
    ARRAY,
    Connection,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)

from app.domain.timeutil import now_micros
from app.events.messages import Event, TokenRevoked, encode, tenant_of
from app.ops.tasks import running
from app.store.engine import Database
from app.store.models import EventLog, Tenant

log = logging.getLogger(__name__)
DEFAULT_SECONDS = 600
PRUNE_EVERY_SECONDS = 60.0
REPLAY_BATCH = 500  # rows read per query while catching up

_TENANTS = cast(Table, Tenant.__table__)
_LOG = cast(Table, EventLog.__table__)
# Built once: constructing them per change cost more than running them (bench/event_log.py).
_ADVANCE = (
    update(_TENANTS)
    .where(_TENANTS.c.id == bindparam("tenant_id"))
    .values(event_seq=_TENANTS.c.event_seq + bindparam("count"))
    .returning(_TENANTS.c.event_seq)
)
_INSERT = insert(_LOG)
# PostgreSQL: both in one statement, one round trip less while the tenant row is locked.
_ADVANCE_AND_INSERT = text(
    """
    WITH advanced AS (
        UPDATE tenants SET event_seq = event_seq + :count WHERE id = :tenant_id
        RETURNING event_seq
    )
    INSERT INTO event_log (tenant_id, seq, at, body)
    SELECT :tenant_id, advanced.event_seq - :count + logged.n, :at, logged.body
    FROM advanced, unnest(CAST(:bodies AS text[])) WITH ORDINALITY AS logged(body, n)
    RETURNING seq
    """
).bindparams(bindparam("bodies", type_=ARRAY(Text())))

Logged = tuple[int, str]  # an event's sequence and its encoding (messages.encode, no seq)


def append(conn: Connection, events: Sequence[Event], now: int) -> list[Logged | None]:
    """Logs the tenant events (token revocations have their own channel and poll: not logged)
    in the caller's transaction; each one's sequence and encoding, None for the others (the
    publisher sends the same encoding with the sequence added, so an event is encoded once)."""
    bodies: dict[int, list[str]] = {}
    for event in events:
        if not isinstance(event, TokenRevoked):
            bodies.setdefault(tenant_of(event), []).append(encode(event))
    first: dict[int, int] = {}
    for tenant_id, encoded in sorted(bodies.items()):  # one lock order for every writer
        first[tenant_id] = _append(conn, tenant_id, encoded, now)
    logged: list[Logged | None] = []
    taken: Counter[int] = Counter()
    for event in events:
        if isinstance(event, TokenRevoked):
            logged.append(None)
            continue
        tenant_id = tenant_of(event)
        n = taken[tenant_id]
        taken[tenant_id] += 1
        logged.append((first[tenant_id] + n, bodies[tenant_id][n]))
    return logged


def _append(conn: Connection, tenant_id: int, bodies: list[str], now: int) -> int:
    """Advances the tenant's sequence (locking its row to commit) and inserts the events with
    the sequences taken; the first of them."""
    count = len(bodies)
    params = {"tenant_id": tenant_id, "count": count}
    if conn.dialect.name == "postgresql":
        seqs = conn.execute(_ADVANCE_AND_INSERT, {**params, "at": now, "bodies": bodies})
        return min(seqs.scalars())
    first = conn.execute(_ADVANCE, params).scalar_one() - count + 1
    rows = [
        {"tenant_id": tenant_id, "seq": first + n, "at": now, "body": body}
        for n, body in enumerate(bodies)
    ]
    conn.execute(_INSERT, rows)
    return first


async def last_seq(db: Database, tenant_id: int) -> int:
    """The sequence of the tenant's last committed event (0: none yet)."""
    async with db.read() as session:
        found = await session.scalar(select(_TENANTS.c.event_seq).where(_TENANTS.c.id == tenant_id))
    return int(found or 0)


async def read_after(
    db: Database, tenant_id: int, after: int, limit: int = REPLAY_BATCH
) -> list[tuple[int, str]]:
    """Up to ``limit`` of the tenant's logged events after sequence ``after``, in order."""
    query = (
        select(_LOG.c.seq, _LOG.c.body)
        .where(_LOG.c.tenant_id == tenant_id, _LOG.c.seq > after)
        .order_by(_LOG.c.seq)
        .limit(limit)
    )
    async with db.read() as session:
        return [(int(seq), str(body)) for seq, body in await session.execute(query)]


async def read_at(db: Database, tenant_id: int, seq: int) -> str | None:
    """The logged encoding of the tenant's event ``seq`` (None: pruned)."""
    query = select(_LOG.c.body).where(_LOG.c.tenant_id == tenant_id, _LOG.c.seq == seq)
    async with db.read() as session:
        found = await session.scalar(query)
    return None if found is None else str(found)


async def prune(db: Database, keep_seconds: int, now: int | None = None) -> int:
    """Deletes events older than ``keep_seconds``; how many."""
    cutoff = (now if now is not None else now_micros()) - keep_seconds * 1_000_000
    return await db.run_write(
        lambda conn: conn.execute(delete(_LOG).where(_LOG.c.at < cutoff)).rowcount or 0
    )


@asynccontextmanager
async def running_pruner(db: Database, keep_seconds: int) -> AsyncIterator[None]:
    """Prunes the log every minute while the block runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            try:
                await prune(db, keep_seconds)
            except Exception as error:  # an outage: the next round tries again
                log.warning("could not prune the event log: %s", error)

    async with running(loop(), "event-log-pruner"):
        yield
