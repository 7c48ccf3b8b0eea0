"""The reaper of silent runs (app.lifecycle.timeouts) at scale: the plan and time of its
candidate statement, and how long each batch's write transaction holds SQLite's writer or
PostgreSQL's row locks.

    .venv/bin/python bench/reaper.py [--runs N] [--batches B] [--postgres [URL]]

A fresh SQLite file (or a throwaway PostgreSQL database) with 100,000 users and N runs (default
1,000,000), one in 500 of them RUNNING (its user's current run) and silent for longer than the
timeout, the rest finished. Then B batches (default 5) of app.lifecycle.timeouts.end_silent_runs
as the reaper runs them, each timed inside the transaction and with its commit.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import throwaway
from sqlalchemy import Connection, text
from sqlalchemy.dialects import postgresql, sqlite

from app.lifecycle import sql, timeouts
from app.store.engine import open_database
from app.store.migrate import upgrade

USERS = 100_000
T0 = 1_790_000_000_000_000
S = 1_000_000
RUNNING_EVERY = 500
TIMEOUT = 3600.0

_USERS = (
    "SELECT i, 1, 'u' || i, 'u' || i, 'IN_PROGRESS', 0, {false}, 0, 1, 0,"
    " CASE WHEN i <= {running} THEN i * {every} END FROM {series}"
)
# Run i * RUNNING_EVERY is user i's running run; the others are finished runs of any user.
_RUNS = (
    "SELECT i, 1, CASE WHEN i % {every} = 0 THEN i / {every} ELSE 1 + i % {users} END,"
    " 'DELTA', 'MAIL', CASE WHEN i % {every} = 0 THEN 'RUNNING' ELSE 'SUCCEEDED' END,"
    " {t0} + i * {s}, CASE WHEN i % {every} = 0 THEN NULL ELSE {t0} + i * {s} + 5 END,"
    " 0, 0, 0, {t0} + i * {s} FROM {series}"
)
_INSERT_USERS = (
    "INSERT INTO sync_users (id, tenant_id, email, destination_email, status, latest_sort,"
    " sync_requested, unresolved_failure_count, version, created_at, current_run_id) "
)
_INSERT_RUNS = (
    "INSERT INTO sync_runs (id, tenant_id, user_id, kind, service, state, started_at,"
    " finished_at, items_processed, items_failed, changes, last_report_at) "
)


def _fill(conn: Connection, runs: int) -> None:
    postgres = conn.dialect.name == "postgresql"
    conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (1, 't', 0)"))

    def series(n: int) -> str:
        if postgres:
            return f"generate_series(1::bigint, {n}) i"
        return (
            "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s"
            f" WHERE i < {n}) SELECT i FROM s)"
        )

    figures: dict[str, Any] = {"every": RUNNING_EVERY, "users": USERS, "t0": T0, "s": S}
    running = runs // RUNNING_EVERY
    conn.execute(
        text(
            _INSERT_USERS
            + _USERS.format(
                false="false" if postgres else "0", running=running, series=series(USERS), **figures
            )
        )
    )
    conn.execute(text(_INSERT_RUNS + _RUNS.format(series=series(runs), **figures)))


async def run(url: str, runs: int, batches: int) -> None:
    await asyncio.to_thread(upgrade, url)
    db = open_database(url)
    try:
        started = time.perf_counter()
        await db.run_write(lambda conn: _fill(conn, runs))
        postgres = db.dialect == "postgresql"
        async with db.read() as session:
            conn = await session.connection()
            await conn.execute(text("ANALYZE"))
        print(f"filled {runs:,} runs in {time.perf_counter() - started:.1f} s")
        now = T0 + (runs + 10) * S + int(TIMEOUT) * S  # every running run is silent
        candidates = (sql.LOCK_SILENT_RUNS if postgres else sql.SILENT_RUNS).params(
            cutoff=timeouts.cutoff(now, TIMEOUT), limit=timeouts.BATCH
        )
        dialect = postgresql.dialect() if postgres else sqlite.dialect()
        statement = str(candidates.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        explain = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
        async with db.read() as session:
            conn = await session.connection()
            plan = (await conn.exec_driver_sql(explain + statement)).all()
            started = time.perf_counter()
            found = (await conn.exec_driver_sql(statement)).all()
            took = (time.perf_counter() - started) * 1000
        print("candidates:", " | ".join(str(row[-1]).strip() for row in plan))
        print(f"candidates: {len(found)} rows in {took:.2f} ms")

        for _ in range(batches):

            def batch(conn: Connection) -> tuple[int, float]:
                started = time.perf_counter()
                ended, _ = timeouts.end_silent_runs(conn, now, TIMEOUT)
                return len(ended.runs), time.perf_counter() - started

            started = time.perf_counter()
            ended, inside = await db.run_write(batch)
            total = time.perf_counter() - started
            print(
                f"batch: {ended} runs ended, {inside * 1000:.1f} ms in the transaction, "
                f"{total * 1000:.1f} ms with its commit"
            )
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print("PostgreSQL" if args.postgres else "SQLite")
    asyncio.run(_bench(args.postgres, args.runs, args.batches))


async def _bench(admin_url: str | None, *sizes: int) -> None:
    async with throwaway.database(admin_url, "bench_reaper") as url:
        await run(url, *sizes)


if __name__ == "__main__":
    main()
