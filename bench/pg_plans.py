"""The PostgreSQL plans of every statement the Sync Status table's reads send, per filter.

    .venv/bin/python bench/pg_plans.py postgresql://postgres@127.0.0.1:5432/NAME

NAME is a database seeded by `bench/queries.py --postgres --keep` (tenant "Bench"). Runs
app/reads (user_page with user_count, as resolvers/queries.py does) for each filter of
bench/queries.py in this process, records each statement with its parameters, and runs
EXPLAIN (ANALYZE, BUFFERS) of it on a plain asyncpg connection with custom plans. Prints each
statement's time, buffers and its scans on sync_users: a sequential or bitmap heap scan of
sync_users in the plan of a filter other than a search is a defect (the counters and indexes
are meant to answer them).
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.timeutil import to_micros
from app.reads import users as reads
from app.reads.pagination import PageArgs
from app.store.engine import open_database
from app.store.models import Policy, Tenant

SCAN = re.compile(
    r"(Seq Scan|Bitmap Heap Scan|Index Only Scan|Index Scan(?: Backward)?)( using \S+)? on (\S+)"
)


def filters(finance: int) -> dict[str, tuple[reads.UserFilter, str]]:
    now = datetime.now(UTC)
    day = to_micros(now - timedelta(days=1)), to_micros(now)
    week = to_micros(now - timedelta(days=7)), to_micros(now)
    f = reads.UserFilter
    return {
        "first page, no filter": (f(), "EMAIL_ASC"),
        "status FAILED": (f(status="FAILED"), "EMAIL_ASC"),
        "policy Finance": (f(policy_id=finance), "EMAIL_ASC"),
        "latest sync in last 24 h": (
            f(latest_sync_from=day[0], latest_sync_to=day[1]),
            "EMAIL_ASC",
        ),
        "latest sync in last 7 days": (
            f(latest_sync_from=week[0], latest_sync_to=week[1]),
            "EMAIL_ASC",
        ),
        "email search 'garcia'": (f(email_contains="garcia"), "EMAIL_ASC"),
        "email search 'maria.chen12'": (f(email_contains="maria.chen12"), "EMAIL_ASC"),
        "all combined": (
            f("garcia", week[0], week[1], finance, "FAILED"),
            "EMAIL_ASC",
        ),
        "order LATEST_SYNC_DESC": (f(), "LATEST_SYNC_DESC"),
        "LATEST_SYNC_DESC, FAILED, 24 h": (
            f(latest_sync_from=day[0], latest_sync_to=day[1], status="FAILED"),
            "LATEST_SYNC_DESC",
        ),
    }


async def main(url: str) -> None:
    db = open_database(url)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(db.read_engine.sync_engine, "before_cursor_execute", record)
    async with db.read() as session:
        tenant = await session.scalar(select(Tenant.id).where(Tenant.name == "Bench"))
        finance = await session.scalar(
            select(Policy.id).where(Policy.tenant_id == tenant, Policy.name == "Finance")
        )
    assert tenant is not None and finance is not None, "seed with bench/queries.py --keep first"
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        for name, (filt, order) in filters(finance).items():
            seen.clear()
            async with db.read() as session:
                page = await reads.user_page(session, tenant, filt, order, PageArgs(first=10))
                if page.total is None:
                    await reads.user_count(session, tenant, filt)  # uncached: as a first request
            print(f"-- {name}")
            for statement, params in seen:
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                plan = [
                    r[0]
                    for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *params)
                ]
                took = next(line for line in plan if line.startswith("Execution Time"))
                buffers = next((line.strip() for line in plan if "Buffers:" in line), "")
                scans = sorted(
                    {" ".join(filter(None, m.groups())) for m in map(SCAN.search, plan) if m}
                )
                short = " ".join(statement.split())[:90]
                print(f"  {took:<28} {buffers:<40} {short}")
                for scan in scans:
                    print(f"      {scan}")
    finally:
        await conn.close()
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
