"""One unit of work: a write transaction whose events are published only after it commits.

`write` runs the run lifecycle's synchronous functions as one transaction (Database.run_write);
`unit_of_work` gives the ORM writers (administration) an AsyncSession."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.events import Event, Publisher
from app.timeutil import now_micros

T = TypeVar("T")
# A change: (connection, now) -> (its result, the events announcing it).
Change = Callable[[Connection, int], tuple[T, list[Event]]]


async def write(db: Database, publisher: Publisher, change: Change[T]) -> T:
    """Runs the change in one write transaction, then publishes its events. `now` is read once
    the transaction began: on SQLite, where writes run one at a time, it grows in commit order."""
    result, events = await db.run_write(lambda conn: change(conn, now_micros()))
    # Reached only when the transaction committed: never announce state that did not persist.
    await publisher.publish(events)
    return result


@dataclass(slots=True)
class Work:
    session: AsyncSession
    now: int
    events: list[Event] = field(default_factory=list)


@asynccontextmanager
async def unit_of_work(db: Database, publisher: Publisher) -> AsyncIterator[Work]:
    async with db.write() as session:
        work = Work(session=session, now=now_micros())
        yield work
    # Reached only when the transaction committed: never announce state that did not persist.
    await publisher.publish(work.events)
