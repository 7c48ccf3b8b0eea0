"""One unit of work: a write transaction whose events are published only after it commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.events import Event, Publisher
from app.timeutil import now_micros


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
