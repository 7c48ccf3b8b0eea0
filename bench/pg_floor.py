"""The plain-asyncpg floor of the read side's slowest PostgreSQL statements.

    .venv/bin/python bench/pg_floor.py DATABASE_URL [--runs R] [--warmup W] [--explain]

DATABASE_URL is a database seeded by `bench/queries.py --postgres --keep` (tenant "Bench").
Each statement is the one app/reads sends for a page's totalCount, compiled by SQLAlchemy for
asyncpg and run directly on one asyncpg connection: no GraphQL, no pool, no SQLAlchemy at run
time. Its p50/p99 is what the server cannot beat with that statement on this machine;
--explain prints each one's EXPLAIN (ANALYZE, BUFFERS) first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.timeutil import to_micros
from app.reads.users import UserFilter, conditions
from app.store.models import SyncUser

TENANT = "Bench"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def compiled(tenant_id: int, filt: UserFilter) -> tuple[str, list[Any]]:
    """The count app/reads/users.py sends on PostgreSQL, as asyncpg SQL and arguments."""
    query = select(func.count()).select_from(SyncUser)
    query = query.where(*conditions(tenant_id, "postgresql", filt))
    sql = query.compile(dialect=PGDialect_asyncpg())
    return str(sql), [sql.params[name] for name in sql.positiontup or ()]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    # As app/reads/users.py plans a search: custom plans for prepared statements.
    conn = await asyncpg.connect(args.url, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = $1", TENANT)
        week = to_micros(datetime.now(UTC) - timedelta(days=7))
        code = await conn.fetchval(
            "SELECT error_code FROM failure_reasons WHERE tenant_id = $1 "
            "ORDER BY user_count DESC, error_code LIMIT 1",
            tenant_id,
        )
        finance = await conn.fetchval(
            "SELECT id FROM policies WHERE tenant_id = $1 AND name = 'Finance'", tenant_id
        )
        cases = {
            "count, email search 'garcia'": UserFilter(email_contains="garcia"),
            "count, email search 'maria.chen12'": UserFilter(email_contains="maria.chen12"),
            "count, all combined": UserFilter(
                email_contains="garcia", status="FAILED", policy_id=finance, latest_sync_from=week
            ),
            "count, errorCode + 7 days + 'garcia'": UserFilter(
                email_contains="garcia", error_code=code, latest_sync_from=week
            ),
        }
        statements = {name: compiled(tenant_id, filt) for name, filt in cases.items()}
        if args.explain:
            for name, (sql, params) in statements.items():
                plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
                print(f"-- {name}\n{sql}\n" + "\n".join(row[0] for row in plan) + "\n")
        prepared = {name: await conn.prepare(sql) for name, (sql, _) in statements.items()}
        times: dict[str, list[float]] = {name: [] for name in statements}
        counts: dict[str, int] = {}
        for round_no in range(args.warmup + args.runs):
            for name, (_, params) in statements.items():  # round-robin, as queries.py
                started = time.perf_counter()
                counts[name] = await prepared[name].fetchval(*params)
                if round_no >= args.warmup:
                    times[name].append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    print(f"plain asyncpg, {args.runs} runs each (round trip on one connection)")
    for name, values in times.items():
        print(
            f"{name:<40} {counts[name]:>8,} rows  p50 {pct(values, 50):7.2f} ms  "
            f"p99 {pct(values, 99):7.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
