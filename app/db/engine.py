"""Engines and sessions. SQLite gets WAL, a busy timeout, and a separate single-connection
writer engine whose transactions start with BEGIN IMMEDIATE, so concurrent writers queue in
the pool instead of failing with "database is locked". PostgreSQL uses one pool for both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_CACHE_SIZE = -65536  # KiB
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    f"PRAGMA cache_size={SQLITE_CACHE_SIZE}",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA mmap_size=1073741824",
)


def normalize_url(url: str) -> str:
    """Accept plain postgres:// and sqlite:// URLs and pick the async drivers."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


class _SQLiteCompiler(SQLiteCompiler):
    """Renders `select.with_hint(table, "INDEXED BY ix", "sqlite")`, which SQLAlchemy's SQLite
    compiler drops: the read side names an index where SQLite, without statistics, would pick
    a worse one (see app/reads/users.py)."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def _sqlite_engine(url: str, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)
    engine.sync_engine.dialect.statement_compiler = _SQLiteCompiler

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


@dataclass(slots=True)
class Database:
    """The read and write sides of one database."""

    url: str
    read_engine: AsyncEngine
    write_engine: AsyncEngine
    reader: async_sessionmaker[AsyncSession]
    writer: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back on error."""
        async with self.writer() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()


def open_database(url: str, read_pool_size: int = 4) -> Database:
    url = normalize_url(url)
    if is_sqlite(url):
        read_engine = _sqlite_engine(url, "BEGIN", read_pool_size)
        write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE", 1)
    else:
        read_engine = write_engine = create_async_engine(
            url, pool_size=10, max_overflow=10, pool_pre_ping=True
        )
    return Database(
        url=url,
        read_engine=read_engine,
        write_engine=write_engine,
        reader=async_sessionmaker(read_engine, expire_on_commit=False),
        writer=async_sessionmaker(write_engine, expire_on_commit=False),
    )
