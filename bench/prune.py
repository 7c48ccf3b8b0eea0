"""Pruning old runs while the service works: rows deleted per second, the longest write
transaction of the pruner (on SQLite: the longest the write lock is held), and the p99 of
small concurrent write transactions and page-sized reads, beside the same load without pruning.

    .venv/bin/python bench/prune.py [--runs N] [--users U] [--postgres [URL]]

A fresh SQLite file (or a throwaway PostgreSQL database) with U users (default 10,000) and N
finished runs (default 500,000) spread over them, 90% older than the retention period. The
load: one task doing a one-row update transaction (a run report's size) back to back, one task
reading a 50-row page of users; each operation is timed. Phase 1: load alone for a few
seconds (baseline). Phase 2: the same load while app.ops.retention.prune runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import throwaway
from sqlalchemy import Connection, insert, select, text, update

from app.domain.timeutil import now_micros
from app.ops.retention import DAY_US, cutoff_for, prune
from app.store.engine import Database, open_database
from app.store.migrate import upgrade
from app.store.models import SyncRun, SyncUser, Tenant

CHUNK = 20_000


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def fill(db: Database, users: int, runs: int) -> None:
    now = now_micros()
    async with db.write() as session:
        await session.execute(insert(Tenant).values(id=1, name="bench", created_at=now))
        await session.execute(
            insert(SyncUser),
            [
                {"id": i, "tenant_id": 1, "email": f"u{i}@src.example",
                 "destination_email": f"u{i}@dst.example", "status": "SYNCED", "created_at": now}
                for i in range(1, users + 1)
            ],
        )  # fmt: skip
    old_runs = runs * 9 // 10
    for start in range(0, runs, CHUNK):
        rows = []
        for i in range(start + 1, min(runs, start + CHUNK) + 1):
            at = now - 200 * DAY_US + i * 1000 if i <= old_runs else now - 1000 * (runs - i)
            rows.append(
                {"id": i, "tenant_id": 1, "user_id": 1 + i % users, "kind": "DELTA",
                 "service": "MAIL", "state": "SUCCEEDED", "started_at": at, "finished_at": at + 1}
            )  # fmt: skip

        def write(conn: Connection, rows: list[dict[str, object]] = rows) -> None:
            conn.execute(insert(SyncRun), rows)

        await db.run_write(write)
    # Each user's latest finished run is its newest one.
    await db.run_write(
        lambda conn: conn.execute(
            text(
                "UPDATE sync_users SET last_finished_run_id = "
                "(SELECT max(id) FROM sync_runs r WHERE r.user_id = sync_users.id)"
            )
        )
    )


async def load(db: Database, stop: asyncio.Event, writes: list[float], reads: list[float]) -> None:
    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()

            def bump(conn: Connection, n: int = n) -> None:
                conn.execute(
                    update(SyncUser)
                    .where(SyncUser.id == 1 + n % 100)
                    .values(version=SyncUser.version + 1)
                )

            await db.run_write(bump)
            writes.append(time.perf_counter() - started)
            await asyncio.sleep(0.002)

    async def reader() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            async with db.read() as session:
                (await session.execute(select(SyncUser).order_by(SyncUser.email).limit(50))).all()
            reads.append(time.perf_counter() - started)
            await asyncio.sleep(0.002)

    await asyncio.gather(writer(), reader())


async def measure(db: Database, seconds: float, pruning: bool) -> dict[str, float]:
    stop = asyncio.Event()
    writes: list[float] = []
    reads: list[float] = []
    batches: list[float] = []
    task = asyncio.create_task(load(db, stop, writes, reads))
    started = time.perf_counter()
    deleted = 0
    if pruning:
        result = await prune(db, cutoff_for(90), on_batch=batches.append)
        deleted = result.runs
    else:
        await asyncio.sleep(seconds)
    took = time.perf_counter() - started
    stop.set()
    await task
    return {
        "seconds": took,
        "deleted_per_s": deleted / took if took else 0.0,
        "longest_batch_ms": max(batches, default=0.0) * 1000,
        "median_batch_ms": statistics.median(batches) * 1000 if batches else 0.0,
        "write_p50_ms": p(writes, 0.5),
        "write_p99_ms": p(writes, 0.99),
        "read_p50_ms": p(reads, 0.5),
        "read_p99_ms": p(reads, 0.99),
        "writes": len(writes),
        "deleted": deleted,
    }


async def run(url: str, users: int, runs: int) -> None:
    await asyncio.to_thread(upgrade, url)
    db = open_database(url)
    try:
        started = time.perf_counter()
        await fill(db, users, runs)
        print(f"filled {runs:,} runs for {users:,} users in {time.perf_counter() - started:.1f} s")
        baseline = await measure(db, 5.0, pruning=False)
        pruning = await measure(db, 0.0, pruning=True)
        for name, figures in (("without pruning", baseline), ("while pruning", pruning)):
            print(f"{name:>16}: " + ", ".join(f"{k}={v:,.2f}" for k, v in figures.items()))
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--postgres", nargs="?", const="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print("PostgreSQL" if args.postgres else "SQLite")
    asyncio.run(_bench(args.postgres, args.users, args.runs))


async def _bench(admin_url: str | None, *sizes: int) -> None:
    async with throwaway.database(admin_url, "bench_prune") as url:
        await run(url, *sizes)


if __name__ == "__main__":
    main()
