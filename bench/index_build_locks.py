"""What building an index does to the writes of a live PostgreSQL database: migration 0012's
pg_trgm index of both emails (the largest the migrations build), built plain and then
CONCURRENTLY (app/store/online_index.py) on a seeded database, while a writer updates a random
user every 5 ms as workers' reports do. For each: the build's time, and the writes' latency
during it (the longest is how long a worker's report waited).

    createdb -h 127.0.0.1 -U postgres NAME
    SYNCSTATUS_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/NAME \
        .venv/bin/syncstatus seed --tenant Bench --users 1000000
    .venv/bin/python bench/index_build_locks.py --database NAME [--host 127.0.0.1]

The database must be at the newest migration; the index is dropped and built again (twice), so
use a throw-away one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import asyncpg

INDEX = "ix_sync_users_emails_trgm"
DEFINITION = "ON sync_users USING gin ((email || E'\\n' || destination_email) gin_trgm_ops)"
WRITE = "UPDATE sync_users SET version = version + 1 WHERE id = $1"
PAUSE = 0.005


async def _writer(dsn: str, ids: int, stop: asyncio.Event) -> list[float]:
    conn = await asyncpg.connect(dsn)
    latencies: list[float] = []
    try:
        while not stop.is_set():
            started = time.perf_counter()
            await conn.execute(WRITE, random.randint(1, ids))
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(PAUSE)
    finally:
        await conn.close()
    return latencies


async def build(dsn: str, concurrently: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        ids = await conn.fetchval("SELECT max(id) FROM sync_users")
        await conn.execute(f"DROP INDEX IF EXISTS {INDEX}")
        stop = asyncio.Event()
        writer = asyncio.create_task(_writer(dsn, ids, stop))
        await asyncio.sleep(1.0)  # the writer's pace before the build, in the same figures
        started = time.perf_counter()
        how = "CONCURRENTLY " if concurrently else ""
        await conn.execute(f"CREATE INDEX {how}{INDEX} {DEFINITION}")
        took = time.perf_counter() - started
        await asyncio.sleep(0.5)
        stop.set()
        latencies = sorted(await writer)
    finally:
        await conn.close()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"  {'CONCURRENTLY' if concurrently else 'plain':12s} build {took:6.1f} s   writes "
        f"{len(latencies):5d}, median {statistics.median(latencies):6.2f} ms, p99 {p99:8.1f} ms,"
        f" longest {latencies[-1]:8.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args()
    dsn = f"postgresql://postgres@{options.host}:5432/{options.database}"
    conn = await asyncpg.connect(dsn)
    users = await conn.fetchval("SELECT count(*) FROM sync_users")
    await conn.close()
    print(f"{INDEX} on {users:,} users, a writer updating a user every {PAUSE * 1000:.0f} ms:")
    await build(dsn, concurrently=False)
    await build(dsn, concurrently=True)


if __name__ == "__main__":
    asyncio.run(main())
