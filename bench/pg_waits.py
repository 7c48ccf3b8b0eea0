"""What a PostgreSQL database's backends wait on, sampled from pg_stat_activity until stdin
closes (bench/triage_bulk.py --postgres runs it beside a bulk request):

    .venv/bin/python bench/pg_waits.py URL [--every SECONDS]

Every sample takes each non-idle backend of URL's database (not this one), names its role by
the last statement it ran that was not BEGIN/COMMIT/ROLLBACK (`bulk`: requestSyncs' INSERT into
sync_requests or its count; `worker`: anything else) and counts (role, state, wait event), and
for active ones (role, wait event, the statement's start). For a
backend waiting on a lock it also counts what its blockers (pg_blocking_pids) were doing: a
blocker that is not itself waiting on a lock is busy (committing, say). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

import asyncpg

SAMPLE = """
SELECT pid, state, wait_event_type, wait_event, query, pg_blocking_pids(pid)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SELECT 1", ";")


def role_of(query: str) -> str:
    return "bulk" if "INSERT INTO sync_requests" in query or "count(*)" in query else "worker"


async def sample(url: str, every: float) -> dict[str, object]:
    conn = await asyncpg.connect(url)
    roles: dict[int, str] = {}
    waits: Counter[str] = Counter()
    blockers: Counter[str] = Counter()
    statements: Counter[str] = Counter()
    samples = 0
    done = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    try:
        while not done.done():
            rows = await conn.fetch(SAMPLE)
            samples += 1
            by_pid = {row["pid"]: row for row in rows}
            for row in rows:
                query = (row["query"] or "").strip()
                if not query.upper().startswith(CONTROL):
                    roles[row["pid"]] = role_of(query)
            for row in rows:
                if row["state"] == "idle":
                    continue
                role = roles.get(row["pid"], "?")
                wait = f"{row['wait_event_type']}:{row['wait_event']}"
                waits[f"{role} {row['state']} {wait}"] += 1
                if row["state"] == "active":
                    statements[f"{role} {wait} {' '.join(query.split())[:48]!r}"] += 1
                for blocker in row[5] or []:
                    other = by_pid.get(blocker)
                    what = (
                        "gone"
                        if other is None
                        else f"{roles.get(blocker, '?')} {other['state']} "
                        f"{other['wait_event_type']}:{other['wait_event']} "
                        f"{(other['query'] or '')[:40]!r}"
                    )
                    blockers[f"{role} blocked by {what}"] += 1
            await asyncio.sleep(every)
    finally:
        await conn.close()
    return {
        "samples": samples,
        "waits": dict(waits.most_common()),
        "statements": dict(statements.most_common(12)),
        "blockers": dict(blockers.most_common(12)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--every", type=float, default=0.005)
    args = parser.parse_args()
    started = time.perf_counter()
    found = asyncio.run(sample(args.url, args.every))
    found["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
