"""The event log's cost on the write path: worker mutations with and without it.

    .venv/bin/python bench/event_log.py [--workers 16] [--rounds 6] [--ops 800] [--users 5000]
                                        [--postgres [URL]] [--sqlite]

Each worker's operation is what its mutation costs below GraphQL: one
app.store.unit_of_work.write of the run lifecycle (start, three progress reports, finish; the
events handed to a publisher that drops them), as in bench/write_path.py, but --workers at once
on one tenant, so the tenant row's lock that orders the log (app.events.event_log) is contended
as under real load. Rounds alternate between the log off (the code path of memory://, as
before the log) and on, --ops operations each on fresh users, so the machine's noise falls on
both alike; figures are over all rounds of each: median and p99 per operation, and operations
a second. PostgreSQL (default postgresql://postgres@127.0.0.1:5432/test: a throwaway database
beside it, dropped at the end), and with --sqlite a SQLite file too.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import throwaway  # noqa: E402
from bench_tenant import BenchTenant, DropEvents, populate  # noqa: E402
from write_path import REPORTS, finish, pct, progress, start  # noqa: E402

from app.events.messages import Publisher  # noqa: E402
from app.store.engine import Database, open_database  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
OPS_PER_RUN = 2 + len(REPORTS)


async def one_round(
    db: Database, world: BenchTenant, users: list[int], workers: int, logged: bool
) -> tuple[list[float], float]:
    """The runs of ``users``, ``workers`` at once: each operation's seconds, and the wall time."""
    publisher = Publisher(DropEvents(), event_log=logged)
    tenant = world.tenant_id
    queue = list(users)
    timings: list[float] = []

    async def timed(op: Any) -> Any:
        began = time.perf_counter()
        result = await op
        timings.append(time.perf_counter() - began)
        return result

    async def worker() -> None:
        while queue:
            user_id = queue.pop()
            run_id = await timed(start(db, publisher, tenant, user_id))
            for processed in REPORTS:
                await timed(progress(db, publisher, tenant, run_id, processed))
            await timed(finish(db, publisher, tenant, run_id))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return timings, time.perf_counter() - began


async def compare(db: Database, args: argparse.Namespace, title: str) -> None:
    runs = args.ops // OPS_PER_RUN
    world = await populate(db, runs * args.rounds * 2 + runs)
    users = list(world.user_ids)
    random.shuffle(users)
    await one_round(db, world, users[:runs], args.workers, True)  # warm-up, untimed
    users = users[runs:]
    results: dict[bool, tuple[list[float], float]] = {False: ([], 0.0), True: ([], 0.0)}
    for n in range(args.rounds * 2):
        logged = n % 2 == 1
        chunk, users = users[:runs], users[runs:]
        timings, wall = await one_round(db, world, chunk, args.workers, logged)
        total, seconds = results[logged]
        results[logged] = (total + timings, seconds + wall)
    print(
        f"\n{title}: {args.workers} workers, {args.rounds} rounds of {runs * OPS_PER_RUN} ops each"
    )
    print(f"  {'event log':<10} {'ops':>6} {'median ms':>10} {'p99 ms':>8} {'ops/s':>8}")
    for logged in (False, True):
        timings, seconds = results[logged]
        print(
            f"  {'on' if logged else 'off':<10} {len(timings):>6} "
            f"{pct(timings, 50) * 1e3:>10.2f} {pct(timings, 99) * 1e3:>8.2f} "
            f"{len(timings) / seconds:>8.0f}"
        )
    off, on = results[False][0], results[True][0]
    print(
        f"  on/off: median {pct(on, 50) / pct(off, 50):.2f}x,"
        f" p99 {pct(on, 99) / pct(off, 99):.2f}x,"
        f" mean {statistics.fmean(on) / statistics.fmean(off):.2f}x"
    )


async def postgres(args: argparse.Namespace) -> None:
    server = make_url(args.postgres)
    async with throwaway.database(args.postgres, "syncstatus_bench") as url:
        await asyncio.to_thread(upgrade, url)
        db = open_database(url)
        try:
            await compare(db, args, f"PostgreSQL ({server.host}:{server.port})")
        finally:
            await db.dispose()


async def sqlite(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-event-log-") as folder:
        url = f"sqlite:///{folder}/main.db"
        await asyncio.to_thread(upgrade, url)
        db = open_database(url)
        try:
            await compare(db, args, "SQLite")
        finally:
            await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each, alternating")
    parser.add_argument("--ops", type=int, default=800, help="operations per round")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, default=DEFAULT_POSTGRES)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    await postgres(args)
    if args.sqlite:
        await sqlite(args)


if __name__ == "__main__":
    asyncio.run(main())
