"""SQLite's two write paths (app.store.engine): run_write's transactions on the writer thread, one
hop each, and the ORM writer, which first takes a turn in that thread's queue."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from sqlalchemy import Connection, Table, insert, make_url, select

from app.events.messages import Publisher
from app.store import sqlite_writer
from app.store.engine import Database, open_database
from app.store.migrate import upgrade
from app.store.models import Tenant
from app.store.unit_of_work import write
from tests.server import open_sqlite, sqlite_database
from tests.subscriptions.support import eventually

# A declarative class's __table__ is a Table; SQLAlchemy types it as any FromClause.
tenants = cast(Table, Tenant.__table__)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with open_sqlite() as database:
        yield database


def _add(name: str) -> Callable[[Connection], str]:
    def add(conn: Connection) -> str:
        conn.execute(insert(tenants).values(name=name, created_at=0))
        return threading.current_thread().name

    return add


async def _names(db: Database) -> list[str]:
    async with db.read() as session:
        return list((await session.scalars(select(Tenant.name).order_by(Tenant.id))).all())


async def test_a_transaction_commits_whole_or_not_at_all(db: Database) -> None:
    assert (await db.run_write(_add("kept"))).startswith("sqlite-writer")

    def fails(conn: Connection) -> None:
        _add("dropped")(conn)
        raise ValueError("after the insert")

    with pytest.raises(ValueError, match="after the insert"):
        await db.run_write(fails)
    await db.run_write(_add("after"))  # the connection is usable after a rollback
    assert await _names(db) == ["kept", "after"]


async def test_orm_writes_queue_with_the_writer_threads_in_order(db: Database) -> None:
    async def orm(name: str) -> None:
        async with db.write() as session:
            session.add(Tenant(name=name, created_at=0))
            await asyncio.sleep(0.05)  # holds its turn: the next write waits, then runs

    await asyncio.gather(
        db.run_write(_add("first")), orm("second"), db.run_write(_add("third")), orm("fourth")
    )
    assert await _names(db) == ["first", "second", "third", "fourth"]


async def test_a_write_inside_write_fails_instead_of_waiting_for_itself(db: Database) -> None:
    async with db.write() as session:
        session.add(Tenant(name="outer", created_at=0))
        with pytest.raises(RuntimeError, match="wait for itself"):
            await db.run_write(_add("inner"))
        with pytest.raises(RuntimeError, match="wait for itself"):
            async with db.write():
                pass
    assert await _names(db) == ["outer"]


async def test_dispose_ends_the_writer_thread() -> None:
    with sqlite_database() as url:
        await asyncio.to_thread(upgrade, url)
        database = open_database(url)
        thread = await database.run_write(lambda conn: threading.current_thread())
        await database.dispose()
        for _ in range(50):
            if not thread.is_alive():
                return
            await asyncio.sleep(0.01)
        pytest.fail("the writer thread outlived dispose()")


class RecordingPublisher:
    event_log = False  # as on memory://: no event log

    def __init__(self) -> None:
        self.events: list[object] = []

    async def publish(self, events: list[object], seqs: object = None) -> None:
        self.events.extend(events)


async def test_a_cancelled_caller_still_announces_what_committed(db: Database) -> None:
    """The writer thread finishes a transaction whose caller was cancelled meanwhile (a
    server shutting down): its events must still go out, or subscribers miss a start or
    finish that is in the database."""
    publisher = RecordingPublisher()
    in_thread, release = threading.Event(), threading.Event()

    def change(conn: Connection, now: int) -> tuple[str, list[object]]:
        in_thread.set()
        release.wait(10)
        _add("committed")(conn)
        return "done", ["the event"]

    caller = asyncio.create_task(write(db, cast(Publisher, publisher), change))  # type: ignore[arg-type]
    await asyncio.to_thread(in_thread.wait, 10)
    caller.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await eventually(lambda: publisher.events == ["the event"], within=10)
    assert await _names(db) == ["committed"]


async def test_checkpoints_run_beside_the_writer_not_in_its_commits(db: Database) -> None:
    """The writer connection never checkpoints (wal_autocheckpoint=0); while writes go on, the
    checkpointer thread copies the WAL into the database file (read here without the WAL:
    immutable=1). SQLite's own checkpoint would wait for 1,000 WAL pages, far more than this."""
    writer = db.sqlite_writer
    assert writer is not None
    autocheckpoint = await db.run_write(
        lambda c: c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    )
    assert autocheckpoint == 0
    path = make_url(db.url).database
    before = writer.checkpoints
    for k in range(20):
        await db.run_write(_add(f"wal-{k}"))

    def in_file() -> set[str]:
        with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as conn:
            return {name for (name,) in conn.execute("SELECT name FROM tenants")}

    wanted = {f"wal-{k}" for k in range(20)}
    async with asyncio.timeout(20):
        # A checkpoint starts after a commit, at most every CHECKPOINT_SECONDS.
        # Counted once a checkpoint has returned, which may be just after its pages landed.
        while not wanted <= await asyncio.to_thread(in_file) or writer.checkpoints == before:
            await asyncio.sleep(sqlite_writer.CHECKPOINT_SECONDS / 5)
            await db.run_write(_add(f"more-{uuid.uuid4().hex}"))
    assert writer.checkpoints > before
