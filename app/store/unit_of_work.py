"""One unit of work: a write transaction whose events are published only after it commits.

`write` runs the run lifecycle's synchronous functions as one transaction (Database.run_write);
`unit_of_work` gives the ORM writers (administration) an AsyncSession."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.timeutil import now_micros
from app.events import event_log
from app.events.messages import Event, Publisher
from app.store.engine import Database

T = TypeVar("T")
# A change: (connection, now) -> (its result, the events announcing it).
Change = Callable[[Connection, int], tuple[T, list[Event]]]


async def write(db: Database, publisher: Publisher, change: Change[T], now: int | None = None) -> T:
    """Runs the change in one write transaction, then publishes its events. `now` is read once
    the transaction began: on SQLite, where writes run one at a time, it grows in commit order
    (a given `now` is for tests and tools that need the clock at a chosen time).

    Shielded from the caller's cancellation (a server shutting down): SQLite's writer thread
    finishes a transaction it started whatever happens to the caller, and a start or finish
    in the database must then still reach subscribers."""

    def logged_change(
        conn: Connection,
    ) -> tuple[T, list[Event], list[event_log.Logged | None] | None]:
        at = now_micros() if now is None else now
        result, events = change(conn, at)
        # Last in the transaction: the tenant row's lock is held only for the insert and commit.
        logged = event_log.append(conn, events, at) if publisher.event_log and events else None
        return result, events, logged

    async def commit_then_publish() -> T:
        result, events, logged = await db.run_write(logged_change)
        # Reached only when the transaction committed: never announce what did not persist.
        await publisher.publish(events, logged)
        return result

    task = asyncio.ensure_future(commit_then_publish())
    task.add_done_callback(_retrieved)
    return await asyncio.shield(task)


def _retrieved(task: asyncio.Future[Any]) -> None:
    # A caller that was cancelled no longer waits for the outcome: mark an error (a conflict,
    # say) as retrieved, or asyncio logs it as "never retrieved". A caller still there gets
    # it raised as usual.
    if not task.cancelled():
        task.exception()


@dataclass(slots=True)
class Work:
    session: AsyncSession
    now: int
    events: list[Event] = field(default_factory=list)


@asynccontextmanager
async def unit_of_work(db: Database, publisher: Publisher) -> AsyncIterator[Work]:
    logged: list[event_log.Logged | None] | None = None
    async with db.write() as session:
        work = Work(session=session, now=now_micros())
        yield work
        if publisher.event_log and work.events:
            await session.flush()
            conn = await session.connection()
            logged = await conn.run_sync(event_log.append, work.events, work.now)
    # Reached only when the transaction committed: never announce state that did not persist.
    await publisher.publish(work.events, logged)
