"""The event log on PostgreSQL (issue 11): the tenant's sequence and the rows in one statement,
gap-free and unique under concurrent writers (the tenant row's lock orders them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection

from app.events import event_log
from app.events.messages import UserEvent, decode
from app.store.engine import Database, open_database
from app.store.migrate import upgrade
from app.store.models import Tenant
from tests.server import postgres_database
from tests.services import postgres_admin_url
from tests.subscriptions.factories import user_event

WRITERS, WRITES = 8, 25


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    with postgres_database(postgres_admin_url()) as url:
        await asyncio.to_thread(upgrade, url)
        database = open_database(url)
        try:
            yield database
        finally:
            await database.dispose()


async def test_concurrent_writers_take_gap_free_sequences(db: Database) -> None:
    async with db.write() as session:
        tenant = Tenant(name="acme", created_at=0)
        session.add(tenant)
        await session.flush()
        tenant_id = tenant.id

    async def writer(user_id: int) -> list[int]:
        taken = []
        for version in range(1, WRITES + 1):
            events = [user_event(user_id, version, "started", tenant_id)] * (version % 2 + 1)

            def append(c: Connection, e: list[UserEvent] = events) -> list[event_log.Logged | None]:
                return event_log.append(c, e, 1_000)

            logged = await db.run_write(append)
            taken += [entry[0] for entry in logged if entry]
        return taken

    taken = await asyncio.gather(*(writer(u) for u in range(1, WRITERS + 1)))
    every = sorted(seq for seqs in taken for seq in seqs)
    assert every == list(range(1, len(every) + 1))
    assert all(seqs == sorted(seqs) for seqs in taken)  # a writer's own changes in order
    assert await event_log.last_seq(db, tenant_id) == len(every)
    rows = await event_log.read_after(db, tenant_id, 0, limit=len(every))
    assert [seq for seq, _ in rows] == every
    first_writer = [decode(body) for seq, body in rows if seq in set(taken[0])]
    assert {event.user.id for event in first_writer} == {1}  # type: ignore[union-attr]
