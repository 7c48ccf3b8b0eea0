"""Migration 0003 on a database of the first wave (schema 0002 with runs, FAILED users and
change buckets): the error codes, failure reasons and trends it backfills equal a recount, on
SQLite and PostgreSQL; and it downgrades."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from app.domain.timeutil import MICROS_PER_HOUR, MICROS_PER_MINUTE
from app.store.engine import open_database
from app.store.migrate import alembic_config
from tests.api_tests.triage_recount import recount
from tests.server import empty_database

H = MICROS_PER_HOUR
T0 = 1_790_000_000_000_000 // H * H
# (user, tenant, status, [(state, started hour, finished minutes later, code, message, changes)])
Run = tuple[str, int, int | None, str | None, str | None, int]
USERS: list[tuple[int, int, str, list[Run]]] = [
    (1, 1, "FAILED", [("SUCCEEDED", 0, 5, None, None, 7), ("FAILED", 2, 3, "ERR_A", "a1", 2)]),
    (2, 1, "FAILED", [("FAILED", 3, 1, "ERR_A", "a2", 0)]),
    (3, 1, "FAILED", [("FAILED", 3, 2, "ERR_B", None, 0)]),
    (4, 1, "SYNCED", [("FAILED", 1, 1, "ERR_C", "c", 0), ("SUCCEEDED", 4, 9, None, None, 5)]),
    (
        5,
        1,
        "IN_PROGRESS",
        [("FAILED", 4, 30, "ERR_A", "a3", 1), ("RUNNING", 5, None, None, None, 4)],
    ),
    (6, 1, "COMPLETED_WITH_WARNING", [("COMPLETED_WITH_WARNING", 2, 59, None, None, 3)]),
    (7, 1, "NEVER_SYNCED", []),
    (8, 2, "FAILED", [("FAILED", 3, 0, "ERR_A", "other tenant", 0)]),
]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    with empty_database(request.param) as found:
        yield found


async def _first_wave(url: str) -> None:
    db = open_database(url)
    try:
        async with db.write() as session:
            for tenant in (1, 2):
                await session.execute(
                    text("INSERT INTO tenants (id, name, created_at) VALUES (:id, :name, 0)"),
                    {"id": tenant, "name": f"t{tenant}"},
                )
                await session.execute(
                    text(
                        "INSERT INTO policies (id, tenant_id, name, active, sync_interval_minutes,"
                        " services, user_count, revision, created_at, updated_at)"
                        " VALUES (:id, :id, 'p', true, 60, 'MAIL', 0, 0, 0, 0)"
                    ),
                    {"id": tenant},
                )
            run_id = 0
            changes: dict[tuple[int, int], int] = {}
            for user, tenant, status, runs in USERS:
                await session.execute(
                    text(
                        "INSERT INTO sync_users (id, tenant_id, email, destination_email,"
                        " policy_id, status, latest_sort, sync_requested,"
                        " unresolved_failure_count, version, created_at)"
                        " VALUES (:id, :tenant, :email, :email, :tenant, :status, 0, false,"
                        " 0, 1, 0)"
                    ),
                    {"id": user, "tenant": tenant, "email": f"u{user}@x.example", "status": status},
                )
                last_finished = current = None
                for state, hour, minutes, code, message, count in runs:
                    run_id += 1
                    started = T0 + hour * H
                    finished = None if minutes is None else started + minutes * MICROS_PER_MINUTE
                    await session.execute(
                        text(
                            "INSERT INTO sync_runs (id, tenant_id, user_id, kind, service, state,"
                            " started_at, finished_at, items_processed, items_failed, changes,"
                            " error_code, error_message) VALUES (:id, :tenant, :user, 'DELTA',"
                            " 'MAIL', :state, :started, :finished, 0, 0, :changes, :code, :msg)"
                        ),
                        {
                            "id": run_id,
                            "tenant": tenant,
                            "user": user,
                            "state": state,
                            "started": started,
                            "finished": finished,
                            "changes": count,
                            "code": code,
                            "msg": message,
                        },
                    )
                    if finished is None:
                        current = run_id
                    else:
                        last_finished = run_id
                    if count:
                        minute = (finished or started) // MICROS_PER_MINUTE
                        changes[(tenant, minute)] = changes.get((tenant, minute), 0) + count
                await session.execute(
                    text(
                        "UPDATE sync_users SET last_finished_run_id = :last, current_run_id = :cur"
                        " WHERE id = :id"
                    ),
                    {"last": last_finished, "cur": current, "id": user},
                )
            for (tenant, minute), count in changes.items():
                await session.execute(
                    text("INSERT INTO change_buckets VALUES (:tenant, :minute, :changes)"),
                    {"tenant": tenant, "minute": minute, "changes": count},
                )
    finally:
        await db.dispose()


async def _trends(url: str, tenant: int) -> dict[int, tuple[Any, ...]]:
    db = open_database(url)
    try:
        async with db.read() as session:
            rows = await session.execute(
                text(
                    "SELECT hour, changes, runs_started, runs_succeeded,"
                    " runs_completed_with_warning, runs_failed FROM trend_buckets"
                    " WHERE tenant_id = :t"
                ),
                {"t": tenant},
            )
            trends: dict[int, tuple[Any, ...]] = {
                int(r[0]): tuple(int(v) for v in r[1:]) for r in rows
            }
            reasons = await session.execute(
                text(
                    "SELECT error_code, user_count, sample_message, last_seen_at"
                    " FROM failure_reasons WHERE tenant_id = :t"
                ),
                {"t": tenant},
            )
            trends[-1] = tuple(sorted(tuple(r) for r in reasons))
            return trends
    finally:
        await db.dispose()


async def test_backfill_equals_a_recount(url: str) -> None:
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0002")
    await _first_wave(url)
    await asyncio.to_thread(command.upgrade, config, "head")
    for tenant in (1, 2):
        expected = await recount(url, f"t{tenant}")
        assert expected["mismatched_users"] == []
        found = await _trends(url, tenant)
        reasons = found.pop(-1)
        assert reasons == tuple(
            sorted((code, n, message, at) for code, (n, message, at) in expected["reasons"].items())
        )
        keys = ("runsStarted", "runsSucceeded", "runsCompletedWithWarning", "runsFailed")
        assert {h: v[1:] for h, v in found.items()} == {
            h: tuple(counts.get(k, 0) for k in keys) for h, counts in expected["hours"].items()
        }
        assert sum(v[0] for v in found.values()) == expected["changes"]
    first = await recount(url, "t1")
    assert set(first["reasons"]) == {"ERR_A", "ERR_B"}
    assert first["reasons"]["ERR_A"][:2] == (2, "a3")  # the latest failure with the code
    await asyncio.to_thread(command.downgrade, config, "0002")
    await asyncio.to_thread(command.upgrade, config, "head")
