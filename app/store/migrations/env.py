"""Alembic environment: runs migrations on the async engine of the configured URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        # Each migration commits on its own: one that builds an index CONCURRENTLY
        # (app.store.online_index) must commit what came before it anyway, and a failure then
        # leaves the database at the last whole migration, where the upgrade resumes.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Two `syncstatus db upgrade` at once (an init container per pod, two deploy jobs) both ran
# the same migrations and one died on a duplicate key: on PostgreSQL they take turns under
# this session-level advisory lock. It is held on a connection of its own that stays idle
# (outside any transaction), since a waiting transaction would hold up the holder's
# CREATE INDEX CONCURRENTLY, which waits for older transactions to end.
LOCK_KEY = 0x53594E43  # "SYNC"
LOCK_POLL_SECONDS = 0.5


async def _take_turn(engine: AsyncEngine) -> AsyncConnection | None:
    if engine.dialect.name != "postgresql":
        return None
    holder = await engine.connect()
    holder = await holder.execution_options(isolation_level="AUTOCOMMIT")
    try:
        try_lock = text("SELECT pg_try_advisory_lock(:key)")
        while True:
            if await holder.scalar(try_lock, {"key": LOCK_KEY}):
                break
            await asyncio.sleep(LOCK_POLL_SECONDS)  # polled: nothing to wake us in the database
    except BaseException:
        await holder.close()
        raise
    return holder  # closing it ends the session, and the lock with it


async def _run_async() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        holder = await _take_turn(engine)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(_run)
                await connection.commit()
        finally:
            if holder is not None:
                await holder.close()
    finally:
        await engine.dispose()


asyncio.run(_run_async())
