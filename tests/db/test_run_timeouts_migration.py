"""Migration 0011 on a database at 0010 with running and finished runs: running runs get their
latest known activity as last_report_at (their start, or their latest failed item), finished
runs keep null, the partial index exists; and it downgrades, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import inspect, text

from app.domain.timeutil import MICROS_PER_HOUR, MICROS_PER_MINUTE
from app.store.engine import open_database
from app.store.migrate import alembic_config
from tests.server import empty_database

T0 = 1_790_000_000_000_000 // MICROS_PER_HOUR * MICROS_PER_HOUR
M = MICROS_PER_MINUTE
# (run id, state, started, failed items' times)
RUNS = [
    (1, "SUCCEEDED", T0 - 60 * M, [T0 - 50 * M]),
    (2, "RUNNING", T0, []),
    (3, "RUNNING", T0 + M, [T0 + 5 * M, T0 + 9 * M, T0 + 2 * M]),
]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    with empty_database(request.param) as found:
        yield found


async def _rows(url: str) -> None:
    db = open_database(url)
    try:
        async with db.write() as session:
            await session.execute(
                text("INSERT INTO tenants (id, name, created_at) VALUES (1, 't', 0)")
            )
            for user, (run_id, state, started, items) in enumerate(RUNS, start=1):
                await session.execute(
                    text(
                        "INSERT INTO sync_users (id, tenant_id, email, destination_email,"
                        " status, latest_sort, sync_requested, unresolved_failure_count,"
                        " version, created_at) VALUES (:id, 1, :email, :email, 'IN_PROGRESS',"
                        " 0, false, 0, 1, 0)"
                    ),
                    {"id": user, "email": f"u{user}@x.example"},
                )
                await session.execute(
                    text(
                        "INSERT INTO sync_runs (id, tenant_id, user_id, kind, service, state,"
                        " started_at, finished_at, items_processed, items_failed, changes)"
                        " VALUES (:id, 1, :user, 'DELTA', 'MAIL', :state, :started, :finished,"
                        " 0, :failed, 0)"
                    ),
                    {
                        "id": run_id,
                        "user": user,
                        "state": state,
                        "started": started,
                        "finished": None if state == "RUNNING" else started + M,
                        "failed": len(items),
                    },
                )
                for n, at in enumerate(items):
                    await session.execute(
                        text(
                            "INSERT INTO failed_items (tenant_id, run_id, item_id, item_type,"
                            " error_code, error_message, failed_at)"
                            " VALUES (1, :run, :item, 'message', 'E', 'e', :at)"
                        ),
                        {"run": run_id, "item": f"i{n}", "at": at},
                    )
    finally:
        await db.dispose()


async def _last_reports(url: str) -> tuple[dict[int, int | None], set[str | None]]:
    db = open_database(url)
    try:
        async with db.read() as session:
            conn = await session.connection()
            rows = await conn.execute(text("SELECT id, last_report_at FROM sync_runs"))
            found = {int(run_id): at for run_id, at in rows}
            indexes = await conn.run_sync(
                lambda c: {i["name"] for i in inspect(c).get_indexes("sync_runs")}
            )
            return found, indexes
    finally:
        await db.dispose()


async def test_running_runs_are_backfilled_and_it_downgrades(url: str) -> None:
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0010")
    await _rows(url)
    await asyncio.to_thread(command.upgrade, config, "0011")
    found, indexes = await _last_reports(url)
    assert found == {1: None, 2: T0, 3: T0 + 9 * M}
    assert "ix_sync_runs_running_report" in indexes
    await asyncio.to_thread(command.downgrade, config, "0010")
    db = open_database(url)
    try:
        async with db.read() as session:
            conn = await session.connection()
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("sync_runs")}
            )
    finally:
        await db.dispose()
    assert "last_report_at" not in columns and "started_at" in columns
    await asyncio.to_thread(command.upgrade, config, "head")
    assert (await _last_reports(url))[0] == {1: None, 2: T0, 3: T0 + 9 * M}
