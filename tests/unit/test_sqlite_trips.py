"""app/store/sqlite_trips.py: SQLite statements in one trip to aiosqlite's thread.

The module relies on aiosqlite's private `Connection._execute` / `_conn` / `_thread` and on the
order in which SQLAlchemy's aiosqlite adapter calls a cursor. If an upgrade of either changes
them, these tests fail first: the trips per statement, or the answers, differ."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.store.engine import Database, open_database
from app.store.sqlite_trips import OneTripConnection

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'trips.db'}")
    async with database.write_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()


class Trips:
    """Counts the calls a connection makes to its thread."""

    def __init__(self) -> None:
        self.count = 0

    def watch(self, connection: Any) -> None:
        driver = connection.driver_connection
        assert isinstance(driver, OneTripConnection), "open_database no longer uses OneTrip"
        run = driver._execute  # the private hand-off this module relies on

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await run(fn, *args, **kwargs)

        driver._execute = counted  # type: ignore[method-assign]


async def trips_of(engine: AsyncEngine, statement: Any, params: Any = None) -> tuple[int, Any]:
    trips = Trips()
    async with engine.connect() as conn:
        trips.watch(await conn.get_raw_connection())
        await conn.exec_driver_sql("SELECT 1")  # let SQLAlchemy begin first (its own trip)
        trips.count = 0
        result = await conn.execute(statement, params)
        rows = result.all() if result.returns_rows else result.rowcount
        counted = trips.count
        await conn.commit()
    return counted, rows


async def test_a_statement_is_one_trip(db: Database) -> None:
    async with db.write_engine.begin() as conn:
        await conn.execute(insert(items), [{"name": f"n{i}"} for i in range(5)])
    trips, rows = await trips_of(db.read_engine, select(items.c.name).order_by(items.c.id))
    assert [r.name for r in rows] == ["n0", "n1", "n2", "n3", "n4"]
    assert trips == 1
    trips, rowcount = await trips_of(
        db.write_engine, update(items).where(items.c.id > 2).values(name=items.c.name + "x")
    )
    assert (trips, rowcount) == (1, 3)


async def test_answers_match_plain_aiosqlite(db: Database, tmp_path: Path) -> None:
    """Rows, rowcount, lastrowid and description as aiosqlite's own cursor gives them."""
    async with db.write_engine.begin() as conn:
        first = await conn.execute(insert(items).values(name="a"))
        assert first.inserted_primary_key == (1,)
        many = await conn.execute(insert(items), [{"name": "b"}, {"name": "c"}])
        assert many.rowcount == 2
        assert (await conn.execute(text("DELETE FROM items WHERE name = 'c'"))).rowcount == 1
    ours: list[Any] = []
    async with db.read_engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        for sql in ("SELECT id, name FROM items ORDER BY id", "SELECT count(*) AS n FROM items"):
            cursor = await driver.cursor().execute(sql)
            ours.append((cursor.description, await cursor.fetchall()))
    theirs: list[Any] = []
    async with aiosqlite.connect(tmp_path / "trips.db") as plain:
        for sql in ("SELECT id, name FROM items ORDER BY id", "SELECT count(*) AS n FROM items"):
            cursor = await plain.execute(sql)
            theirs.append((cursor.description, await cursor.fetchall()))
    assert (
        ours
        == theirs
        == [
            ((("id",) + (None,) * 6, ("name",) + (None,) * 6), [(1, "a"), (2, "b")]),
            ((("n",) + (None,) * 6,), [(2,)]),
        ]
    )


async def test_fetch_one_many_all_walk_the_rows_once(db: Database) -> None:
    async with db.write_engine.begin() as conn:
        await conn.execute(insert(items), [{"name": f"n{i}"} for i in range(5)])
    async with db.read_engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        cursor = await driver.cursor().execute("SELECT id FROM items ORDER BY id")
        assert await cursor.fetchone() == (1,)
        assert await cursor.fetchmany(2) == [(2,), (3,)]
        assert await cursor.fetchall() == [(4,), (5,)]
        assert await cursor.fetchone() is None
        assert await cursor.fetchmany() == [] and await cursor.fetchall() == []
        # Statements without rows: no description, nothing to fetch.
        cursor = await driver.cursor().execute("CREATE TABLE other (x)")
        assert cursor.description is None and await cursor.fetchall() == []


async def test_streamed_results_still_come_whole(db: Database) -> None:
    """A server-side cursor (stream) reads its rows through fetchmany: every row, in order."""
    async with db.write_engine.begin() as conn:
        await conn.execute(insert(items), [{"name": f"n{i:03}"} for i in range(250)])
    async with db.read_engine.connect() as conn:
        result = await conn.stream(select(items.c.name).order_by(items.c.name))
        names = [row.name async for row in result]
    assert names == [f"n{i:03}" for i in range(250)]


async def test_driver_errors_reach_sqlalchemy_as_before(db: Database) -> None:
    async with db.write_engine.begin() as conn:
        await conn.execute(insert(items).values(name="a"))
    with pytest.raises(IntegrityError):
        async with db.write_engine.begin() as conn:
            await conn.execute(insert(items).values(name="a"))
    with pytest.raises(OperationalError, match="no such table"):
        async with db.read_engine.connect() as conn:
            await conn.execute(text("SELECT * FROM missing"))
    # The connection is still good after an error.
    async with db.read_engine.connect() as conn:
        assert (await conn.execute(select(items.c.name))).scalar_one() == "a"


async def test_pragmas_and_transactions_still_apply(db: Database) -> None:
    """The engine's connect and begin events run on these connections as before."""
    async with db.read_engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 10000
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        assert driver.isolation_level is None  # BEGIN is ours (app/store/engine.py)
    async with db.write_engine.connect() as conn:
        await conn.execute(insert(items).values(name="rolled back"))
        assert (await conn.exec_driver_sql("SELECT count(*) FROM items")).scalar() == 1
        await conn.rollback()
    async with db.read_engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM items")).scalar() == 0


async def test_a_read_session_rolls_back_once(db: Database) -> None:
    """The session's rollback ends the read; the pool's reset after it has nothing to roll
    back, and takes no trip to the thread."""
    async with db.write_engine.begin() as conn:
        await conn.execute(insert(items).values(name="a"))
    trips = Trips()
    async with db.read() as session:
        trips.watch(await (await session.connection()).get_raw_connection())
        trips.count = 0
        assert (await session.execute(select(items.c.name))).scalar_one() == "a"
    # The statement and the session's own rollback: not the pool's second one.
    assert trips.count == 2
    # A transaction still open when the connection goes back is still rolled back by it.
    async with db.write_engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await conn.execute(insert(items).values(name="b"))
        assert driver is not None and driver._conn.in_transaction
        await conn.rollback()
        assert not driver._conn.in_transaction
    async with db.read_engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM items")).scalar() == 1


async def test_begin_goes_with_the_first_statement(db: Database, tmp_path: Path) -> None:
    import sqlite3

    trips = Trips()
    async with db.read_engine.connect() as conn:
        trips.watch(await conn.get_raw_connection())
        assert (await conn.execute(select(items.c.id))).all() == []  # BEGIN rides along
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None and driver._conn.in_transaction
    assert trips.count == 2  # that statement and the rollback ending the transaction
    # The write engine's BEGIN IMMEDIATE runs before its first statement, lock included.
    other = sqlite3.connect(tmp_path / "trips.db", timeout=0, isolation_level=None)
    async with db.write_engine.connect() as conn:
        await conn.execute(select(items.c.id))
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        await conn.rollback()
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    # A transaction without a statement costs no trip at all.
    trips = Trips()
    async with db.read_engine.connect() as conn:
        trips.watch(await conn.get_raw_connection())
        await conn.begin()
        await conn.commit()
    assert trips.count == 0
