"""Migrations keep a live PostgreSQL database writable (app.store.online_index).

- Every statement of a real upgrade from nothing to the newest schema, and of the downgrade back
  to 0005, is recorded: an index built or dropped on a table that outlives the migration is
  built or dropped CONCURRENTLY (a plain CREATE INDEX blocks every write to its table until the
  build ends; a plain DROP INDEX queues every read).
- While 0009 waits for a transaction that writes to sync_users, other writes go on; a plain
  CREATE INDEX would queue them behind its SHARE lock.
- An upgrade that failed in the middle of 0011's build (its column committed, an INVALID index
  left under the index's name) runs again to the end.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from alembic import command
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from app.store.migrate import alembic_config
from tests.server import empty_database, plain_dsn

# 0002-0004 came with the second wave's first day: each alters and backfills whole tables in the
# same migration (sync_users' error codes, every run's trend), which locks those tables anyway.
# A first-wave deployment runs them once; every later migration must stay online.
BEFORE_ONLINE = {"0001", "0002", "0003", "0004"}
STAMP = re.compile(r"alembic_version .*?'(\w+)'(?:.*?'(\w+)')?")
REPORT = "ix_sync_runs_running_report"  # 0011's
CREATE_TABLE = re.compile(r"^CREATE TABLE (\w+)")
DROP_TABLE = re.compile(r"^DROP TABLE (\w+)")
CREATE_INDEX = re.compile(
    r"^CREATE (?:UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?(\w+) ON (\w+)"
)
DROP_INDEX = re.compile(r"^DROP INDEX (CONCURRENTLY )?(?:IF EXISTS )?(\w+)")


@pytest.fixture
def url() -> Iterator[str]:
    with empty_database("postgres") as found:
        yield found


@dataclass
class Step:
    """The statements of one migration, up or down."""

    revision: str = ""  # the migration's own (the newer of a stamp's two)
    statements: list[str] = field(default_factory=list)


def _recorded(url: str, *moves: tuple[str, str]) -> list[Step]:
    """Runs Alembic's (command, revision) moves in turn; the statements sent, per migration
    (each ends with its stamp in alembic_version)."""
    steps = [Step()]

    def record(conn: Connection, cursor: object, statement: str, *_: object) -> None:
        text = " ".join(statement.split())
        if text.startswith(("INSERT INTO alembic_version", "UPDATE alembic_version")):
            stamp = STAMP.search(text)
            assert stamp, text
            steps[-1].revision = max(version for version in stamp.groups() if version)
            steps.append(Step())
        else:
            steps[-1].statements.append(text)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        for move, revision in moves:
            getattr(command, move)(alembic_config(url), revision)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    return [step for step in steps if step.revision]


def _offline_changes(steps: list[Step]) -> list[str]:
    """Index builds and drops that hold a lock against the writes or reads of a table that
    outlives the migration."""
    table_of: dict[str, str] = {}
    found = []
    for step in steps:
        created = {m[1] for s in step.statements if (m := CREATE_TABLE.match(s))}
        dropped = {m[1] for s in step.statements if (m := DROP_TABLE.match(s))}
        for statement in step.statements:
            if build := CREATE_INDEX.match(statement):
                concurrently, name, table = build.groups()
                table_of[name] = table
                offline = not concurrently and table not in created
            elif drop := DROP_INDEX.match(statement):
                concurrently, name = drop.groups()
                offline = not concurrently and table_of.get(name) not in dropped
            else:
                continue
            if offline and step.revision not in BEFORE_ONLINE:
                found.append(f"{step.revision}: {statement}")
    return found


def test_every_index_change_on_a_live_table_is_concurrent(url: str) -> None:
    steps = _recorded(url, ("upgrade", "head"), ("downgrade", "0005"))
    assert len(steps) >= 12 + 7  # every migration up, and down to 0005
    assert sum("CONCURRENTLY" in s for step in steps for s in step.statements) >= 10
    assert _offline_changes(steps) == []


async def _waiting_build(conn: asyncpg.Connection) -> bool:
    """Is a CREATE INDEX waiting for a lock (here: for the open writing transaction)?"""
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE 'CREATE INDEX%' AND datname = current_database()"
        )
    )


async def test_writes_go_on_while_an_index_is_built(url: str) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0008")
    writing, other = [await asyncpg.connect(plain_dsn(url)) for _ in range(2)]
    try:
        # A write in progress (the lock an UPDATE takes) that the build must wait out.
        ongoing = writing.transaction()
        await ongoing.start()
        await writing.execute("LOCK TABLE sync_users IN ROW EXCLUSIVE MODE")
        upgrade = asyncio.create_task(
            asyncio.to_thread(command.upgrade, alembic_config(url), "0009")
        )
        async with asyncio.timeout(30):
            while not await _waiting_build(other):
                assert not upgrade.done(), upgrade.result()
                await asyncio.sleep(0.05)
        # Meanwhile another write takes the same lock at once. Behind a plain CREATE INDEX's
        # SHARE lock (queued behind the open write) it would wait and time out.
        await other.execute("SET lock_timeout = '3s'")
        async with other.transaction():
            await other.execute("LOCK TABLE sync_users IN ROW EXCLUSIVE MODE")
        assert not upgrade.done()  # still waiting for the first write
        await ongoing.commit()
        async with asyncio.timeout(30):
            await upgrade
        valid = await other.fetchval(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_sync_users_emails'::regclass"
        )
        assert valid is True
    finally:
        await writing.close()
        await other.close()


async def test_an_upgrade_resumes_after_a_failed_build(url: str) -> None:
    """As if 0011 failed in its build: its column and backfill committed, an INVALID index
    under the index's name (made here by a unique build that fails), the stamp at 0010."""
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0010")
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        await conn.execute("ALTER TABLE sync_runs ADD COLUMN last_report_at BIGINT")
        await conn.execute("INSERT INTO tenants (name, created_at) VALUES ('a', 0), ('b', 0)")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {REPORT} ON tenants (created_at)")
        invalid = f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{REPORT}'::regclass"
        assert await conn.fetchval(invalid) is False
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        assert await conn.fetchval(invalid) is True
        definition = await conn.fetchval(f"SELECT pg_get_indexdef('{REPORT}'::regclass)")
        assert "ON public.sync_runs" in definition and "WHERE" in definition, definition
    finally:
        await conn.close()
