"""aiosqlite connections whose statements take one trip to their thread, not four.

SQLAlchemy's aiosqlite adapter makes four awaited calls per statement (open a cursor, execute,
fetch all rows, close), and aiosqlite runs each on the connection's thread: four hand-offs
through a queue and the event loop's self-pipe, each a wake-up of the other thread and a turn
for the GIL. At a million users the Sync Status page's first page spent more of its time in
those hand-offs than in SQLite.

`OneTripConnection` is an aiosqlite connection whose cursor does the whole statement (execute,
fetch every row, close) in one call on the thread and answers the later calls from what it kept.
The adapter fetches every row right after executing anyway, so nothing holds more rows than
before. It is plugged in through SQLAlchemy's public `async_creator` (open_database).

This module is the one place that relies on aiosqlite's undocumented `Connection._execute` (run
a function on the connection's thread) and `_conn` (the sqlite3 connection there, whose
`in_transaction` spares a commit or rollback with nothing to end its trip), and on the adapter's
call order; BEGIN rides with the first statement (engine.py's begin event calls
`begin_with_next_statement`); tests/unit/test_sqlite_trips.py fails loudly if either changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.engine import URL

# What one trip brings back: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, list[Any], int, int | None]


def _run(
    conn: sqlite3.Connection, begin: str | None, sql: str, parameters: Any, many: bool
) -> _Outcome:
    cursor = conn.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor:
    """The part of aiosqlite's Cursor that SQLAlchemy's adapter uses, one trip per statement."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []
        self._next = 0

    def __await__(self) -> Generator[Any, None, OneTripCursor]:
        return self.__aenter__().__await__()  # `await conn.cursor()`, as with aiosqlite

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _trip(self, sql: str, parameters: Any, many: bool) -> OneTripCursor:
        conn = self._connection
        begin, conn._begin = conn._begin, None
        outcome: _Outcome = await conn._execute(_run, conn._conn, begin, sql, parameters, many)
        self.description, self._rows, self.rowcount, self.lastrowid = outcome
        self._next = 0
        return self

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> OneTripCursor:
        return await self._trip(sql, () if parameters is None else parameters, False)

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> OneTripCursor:
        return await self._trip(sql, parameters, True)

    async def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        end = self._next + (self.arraysize if size is None else size)
        rows = self._rows[self._next : end]
        self._next += len(rows)
        return rows

    async def fetchall(self) -> list[Any]:
        rows = self._rows[self._next :] if self._next else self._rows
        self._next = len(self._rows)
        return rows

    async def close(self) -> None:
        self._rows = []
        self._next = 0


class OneTripConnection(aiosqlite.Connection):
    _begin: str | None = None  # a BEGIN that goes to the thread with the next statement

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        # No trip: the sqlite3 cursor is opened on the thread, inside the statement's own trip.
        return OneTripCursor(self)

    def begin_with_next_statement(self, begin: str) -> None:
        """Starts the transaction in the next statement's trip, not in a trip of its own (~0.1
        ms, on every read). SQLite starts a transaction's work at its first statement anyway:
        a deferred BEGIN reads nothing, BEGIN IMMEDIATE takes the write lock (waiting as
        busy_timeout says) right before that statement instead of right after the begin."""
        self._begin = begin

    async def commit(self) -> None:
        await self._end(super().commit)

    async def rollback(self) -> None:
        await self._end(super().rollback)

    async def _end(self, end: Callable[[], Awaitable[None]]) -> None:
        # A session's end rolls its transaction back, and then the pool "resets" the connection
        # it takes back with a second rollback: a trip to the thread for nothing, on every read.
        # Nothing runs on this connection meanwhile (SQLAlchemy awaits each call), so reading
        # sqlite3's in_transaction here is safe. A BEGIN still waiting never started anything.
        self._begin = None
        if self._conn.in_transaction:
            await end()


def one_trip_creator(url: URL) -> Callable[[], Awaitable[OneTripConnection]]:
    """SQLAlchemy's `async_creator` for `url`: sqlite3.connect with the file and options that
    the URL's dialect would use (the engine's "connect" events then run as for any connection)."""
    args, kwargs = url.get_dialect()().create_connect_args(url)
    connect = partial(sqlite3.connect, *args, **kwargs)

    async def create() -> OneTripConnection:
        connection = OneTripConnection(connect, iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite.connect()
        await connection  # starts its thread and opens the file
        return connection

    return create
