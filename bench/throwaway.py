"""A throw-away database for a benchmark: a SQLite file in a temporary folder, or a PostgreSQL
database created beside an admin URL and dropped (WITH FORCE) however the benchmark ends.
Imported by bench scripts (bench/ is their sys.path[0])."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import make_url


async def admin(admin_url: str, statement: str) -> None:
    """One statement on an admin connection (CREATE / DROP DATABASE run outside a transaction)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def database(admin_url: str | None, label: str) -> AsyncIterator[str]:
    """The URL of a new empty database: SQLite when `admin_url` is None, else PostgreSQL on the
    server of `admin_url` (any database there the user may connect to, e.g. .../postgres)."""
    if admin_url is None:
        with tempfile.TemporaryDirectory(prefix=f"{label}-") as folder:
            yield f"sqlite+aiosqlite:///{folder}/bench.db"
        return
    server = make_url(admin_url).set(drivername="postgresql")
    on_server = server.render_as_string(hide_password=False)
    name = f"{label}_{uuid.uuid4().hex[:8]}"
    await admin(on_server, f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin(on_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
