"""Engines and sessions. SQLite gets WAL, a busy timeout, and writes that start with BEGIN
IMMEDIATE, so concurrent writers queue instead of failing with "database is locked".
PostgreSQL uses one pool for reads and writes.

Writes come two ways:
- run_write(fn): a whole transaction as one synchronous function on a Connection (the run
  lifecycle, the hot path). SQLite runs it on its writer thread (app.store.sqlite_writer),
  PostgreSQL on the async pool through SQLAlchemy's greenlet bridge (run_sync).
- write(): an AsyncSession for the rare ORM writers (administration, seed); on SQLite a
  single-connection aiosqlite engine that first takes a turn in the writer thread's queue.
Neither may be entered inside the other (or itself): the writer would wait for itself.
Both stay. The lifecycle must be one synchronous function to cost SQLite one hop to its writer
thread; administration and the seed are rare, multi-step and built on the ORM (identity map,
snapshots of session rows, ORM-enabled updates), so moving them to Core would be a rewrite for
nothing. Code both share is written once, synchronously, and reaches a session through
run_sync (run_in, below).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.store.sqlite_trips import OneTripConnection, one_trip_creator
from app.store.sqlite_writer import SQLiteWriter

T = TypeVar("T")
SQLITE_CACHE_SIZE = -65536  # KiB
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    f"PRAGMA cache_size={SQLITE_CACHE_SIZE}",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA mmap_size=1073741824",
)
# The task inside write(), if any (a task it starts inherits the value, but is another task).
_writing: ContextVar[asyncio.Task[Any] | None] = ContextVar("writing", default=None)


def normalize_url(url: str) -> str:
    """Accept plain postgres:// and sqlite:// URLs and pick the async drivers."""
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    elif url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    if url.startswith("postgresql+asyncpg://") and "sslmode=" in url:
        # libpq's sslmode (what managed PostgreSQL services hand out) is asyncpg's ssl, with
        # the same values; asyncpg refused the unknown keyword.
        parsed = make_url(url)
        if "sslmode" in parsed.query and "ssl" not in parsed.query:
            mode = parsed.query["sslmode"]
            parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
            return parsed.render_as_string(hide_password=False)
    return url


def dialect_of(session: AsyncSession) -> str:
    """The session's database kind ("sqlite", "postgresql"): every session here is made bound
    to its engine (open_database)."""
    bind = session.bind
    assert bind is not None, "an unbound session"
    return bind.dialect.name


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


class _SQLiteCompiler(SQLiteCompiler):
    """Renders `select.with_hint(table, "INDEXED BY ix", "sqlite")`, which SQLAlchemy's SQLite
    compiler drops: the read side names an index where SQLite, without statistics, would pick
    a worse one (see app/reads/users.py)."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def _configure_sqlite(engine: Engine, begin: str) -> None:
    engine.dialect.statement_compiler = _SQLiteCompiler

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        driver = connection.connection.driver_connection
        if isinstance(driver, OneTripConnection):  # the async engines: no trip of its own
            driver.begin_with_next_statement(begin)
        else:
            connection.exec_driver_sql(begin)


def _sqlite_engine(url: str, begin: str, pool_size: int) -> AsyncEngine:
    # One trip to the connection's thread per statement, not four (app.store.sqlite_trips).
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        async_creator=one_trip_creator(make_url(url)),
    )
    _configure_sqlite(engine.sync_engine, begin)
    return engine


def _sqlite_writer(url: str) -> SQLiteWriter:
    """Same file, pragmas and BEGIN IMMEDIATE, on pysqlite: one connection, one thread."""
    sync_url = make_url(url).set(drivername="sqlite+pysqlite")
    engine = create_engine(sync_url, pool_size=1, max_overflow=0)
    _configure_sqlite(engine, "BEGIN IMMEDIATE")
    return SQLiteWriter(engine)


@dataclass(slots=True)
class Database:
    """The read and write sides of one database."""

    url: str
    read_engine: AsyncEngine
    write_engine: AsyncEngine
    reader: async_sessionmaker[AsyncSession]
    writer: async_sessionmaker[AsyncSession]
    sqlite_writer: SQLiteWriter | None = None  # SQLite only

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.reader() as session:
            yield session

    async def run_write(self, fn: Callable[[Connection], T]) -> T:
        """fn as one write transaction: committed when it returns, rolled back when it raises.
        Plain synchronous code: on SQLite it runs on the writer thread, off the event loop."""
        _check_not_writing()
        if self.sqlite_writer is not None:
            return await self.sqlite_writer.run(fn)
        async with self.write_engine.begin() as conn:
            return await conn.run_sync(fn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back on error."""
        _check_not_writing()
        token = _writing.set(asyncio.current_task())
        try:
            turn = self.sqlite_writer.turn() if self.sqlite_writer else nullcontext()
            async with turn, self.writer() as session, session.begin():
                yield session
        finally:
            _writing.reset(token)

    async def dispose(self) -> None:
        if self.sqlite_writer is not None:
            await self.sqlite_writer.close()
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()


def _check_not_writing() -> None:
    task = _writing.get()
    if task is not None and task is asyncio.current_task():
        raise RuntimeError("A write inside write(): it would wait for itself.")


def open_database(
    url: str, read_pool_size: int = 4, *, timeout: float = 0, bulk: bool = False
) -> Database:
    """`timeout` (PostgreSQL; 0: none): the most seconds a connect, a wait for a pooled
    connection or one statement may take (asyncpg's client-side `command_timeout`, which
    also covers the pool's pre-ping) before it fails with a TimeoutError, an outage to
    app/ops/outage.py. Server-side timeouts cannot end a wait on a silent network.
    `bulk` (a seed's load): statements are not timed, connecting and pool waits still are;
    rebuilding a million users' indexes takes longer than any request should."""
    url = normalize_url(url)
    if is_sqlite(url):
        read_engine = _sqlite_engine(url, "BEGIN", read_pool_size)
        write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE", 1)
        sqlite_writer: SQLiteWriter | None = _sqlite_writer(url)
    else:
        limits: dict[str, Any] = {}
        if timeout:
            connect: dict[str, float] = {"timeout": timeout}
            if not bulk:
                connect["command_timeout"] = timeout
            limits["connect_args"] = connect
            limits["pool_timeout"] = timeout
        read_engine = write_engine = create_async_engine(
            url, pool_size=10, max_overflow=10, pool_pre_ping=True, **limits
        )
        sqlite_writer = None
    return Database(
        url=url,
        read_engine=read_engine,
        write_engine=write_engine,
        reader=async_sessionmaker(read_engine, expire_on_commit=False),
        writer=async_sessionmaker(write_engine, expire_on_commit=False),
        sqlite_writer=sqlite_writer,
    )


AsyncExecutor = AsyncConnection | AsyncSession
P = ParamSpec("P")


async def run_in(
    executor: AsyncExecutor,
    write: Callable[Concatenate[Connection, P], Any],
    *args: P.args,
    **kwargs: P.kwargs,
) -> None:
    """Runs a synchronous write (a counter's, the audit log's) in an ORM writer's transaction
    (SQLAlchemy's greenlet bridge), so code both write paths share is written once."""
    conn = executor if isinstance(executor, AsyncConnection) else await executor.connection()
    await conn.run_sync(write, *args, **kwargs)
