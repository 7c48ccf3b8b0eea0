"""Write-path latency: the run lifecycle per operation, beside the same statements in plain sqlite3.

    .venv/bin/python bench/write_path.py [--users N] [--ops K] [--warmup W] [--postgres [URL]]

A fresh SQLite file with N users (default 10,000) in one tenant with an active policy. Every
operation is what a worker's mutation costs below GraphQL: one app.store.unit_of_work.write (on
SQLite: one hop to the writer thread for BEGIN IMMEDIATE, app.lifecycle and COMMIT; then events
handed to a publisher that drops them). K operations (default 2,000) as runs of start, 3
progress reports and finish, one user after another, after W warm-up runs (default 50); each
operation is timed alone.

The baseline: the statements the lifecycle sent, recorded on a copy of the same file, replayed
with plain sqlite3 (no SQLAlchemy, no thread hop, same pragmas) on another copy. Same SQL, same
parameters, same starting data: the difference is the cost of SQLAlchemy, the hop to the writer
thread and the pool.

--postgres runs the lifecycle part on PostgreSQL too (default URL
postgresql://postgres@127.0.0.1:5432/test): in a throwaway database created beside that one and
dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import throwaway  # noqa: E402
from bench_tenant import BenchTenant, DropEvents, populate  # noqa: E402

from app.events.messages import Event, Publisher  # noqa: E402
from app.lifecycle import transitions  # noqa: E402
from app.store.engine import SQLITE_PRAGMAS, Database, open_database  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from app.store.unit_of_work import write  # noqa: E402

KINDS = ("start", "progress", "finish")
REPORTS = (10, 50, 90)  # items processed (and changes) of a run's three progress reports
ITEMS_TOTAL = 100
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


# -- the operations, as a worker's mutations run them (resolvers/mutations.py) ----------------


async def start(db: Database, publisher: Publisher, tenant_id: int, user_id: int) -> int:
    def change(conn: Connection, now: int) -> tuple[int, list[Event]]:
        user = transitions.load_user(conn, tenant_id, user_id)
        run, event = transitions.start_run(conn, user, now, items_total=ITEMS_TOTAL)
        return run.id, [event]

    return await write(db, publisher, change)


async def progress(db: Database, publisher: Publisher, tenant_id: int, run_id: int, n: int) -> None:
    def change(conn: Connection, now: int) -> tuple[None, list[Event]]:
        run, user = transitions.load_run(conn, tenant_id, run_id)
        _, events = transitions.report_progress(conn, run, user, now, n, n)
        return None, events

    await write(db, publisher, change)


async def finish(db: Database, publisher: Publisher, tenant_id: int, run_id: int) -> None:
    def change(conn: Connection, now: int) -> tuple[None, list[Event]]:
        run, user = transitions.load_run(conn, tenant_id, run_id)
        _, event = transitions.finish_run(conn, run, user, now)
        return None, [event]

    await write(db, publisher, change)


Timings = dict[str, list[float]]  # seconds per operation, by kind


async def drive(
    db: Database,
    world: BenchTenant,
    cycles: int,
    warmup: int,
    mark: Callable[[str], None] = lambda kind: None,
) -> Timings:
    """Runs warmup + cycles runs, one user each; times the operations of the last `cycles`."""
    publisher = Publisher(DropEvents())
    tenant = world.tenant_id
    timings: Timings = {kind: [] for kind in KINDS}

    async def timed(kind: str, n: int, op: Awaitable[Any]) -> Any:
        mark(kind)
        began = time.perf_counter()
        result = await op
        if n >= warmup:
            timings[kind].append(time.perf_counter() - began)
        return result

    for n, user_id in enumerate(world.user_ids[: warmup + cycles]):
        run_id = await timed("start", n, start(db, publisher, tenant, user_id))
        for processed in REPORTS:
            await timed("progress", n, progress(db, publisher, tenant, run_id, processed))
        await timed("finish", n, finish(db, publisher, tenant, run_id))
    return timings


# -- the baseline: the same statements in plain sqlite3 ----------------------------------------

Statement = tuple[str, Any, bool]  # SQL, parameters, executemany
Recording = list[tuple[str, list[Statement]]]  # (kind, statements) per operation


async def record(url: str, world: BenchTenant, cycles: int, warmup: int) -> Recording:
    """The statements each operation sends to SQLite, with their parameters."""
    db = open_database(url)
    ops: Recording = []

    def on_execute(conn: Any, cursor: Any, sql: str, params: Any, ctx: Any, many: bool) -> None:
        ops[-1][1].append((sql, params, many))

    def on_commit(conn: Any) -> None:
        ops[-1][1].append(("COMMIT", None, False))

    assert db.sqlite_writer is not None
    engine = db.sqlite_writer.engine  # the lifecycle's writes (Database.run_write)
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        await drive(db, world, cycles, warmup, mark=lambda kind: ops.append((kind, [])))
    finally:
        await db.dispose()
    return ops


def replay(path: Path, ops: Recording, warmup_ops: int) -> Timings:
    conn = sqlite3.connect(path, isolation_level=None)  # BEGIN/COMMIT are in the recording
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    timings: Timings = {kind: [] for kind in KINDS}
    for n, (kind, statements) in enumerate(ops):
        began = time.perf_counter()
        for sql, params, many in statements:
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params or ()).fetchall()
        if n >= warmup_ops:
            timings[kind].append(time.perf_counter() - began)
    conn.close()
    return timings


def checkpoint(path: Path) -> None:
    """Folds the WAL into the file, so copying the file copies the database."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# -- report ------------------------------------------------------------------------------------


def show(title: str, timings: Timings, baseline: Timings | None = None) -> None:
    print(f"\n{title}")
    head = f"  {'operation':<10} {'n':>5} {'median us':>10} {'p99 us':>8}"
    if baseline:
        head += f" {'sqlite3 median':>15} {'p99':>6} {'x median':>9}"
    print(head)
    rows = [(kind, timings[kind], baseline[kind] if baseline else None) for kind in KINDS]
    every = [t for kind in KINDS for t in timings[kind]]
    rows.append(("all", every, [t for k in KINDS for t in baseline[k]] if baseline else None))
    for kind, values, base in rows:
        line = f"  {kind:<10} {len(values):>5} {pct(values, 50) * 1e6:>10.0f} "
        line += f"{pct(values, 99) * 1e6:>8.0f}"
        if base:
            line += f" {pct(base, 50) * 1e6:>15.0f} {pct(base, 99) * 1e6:>6.0f}"
            line += f" {pct(values, 50) / pct(base, 50):>8.1f}x"
        print(line)
    mean = statistics.fmean(every)
    print(f"  mean {mean * 1e6:.0f} us per operation: {1 / mean:,.0f} operations/s on one core")


async def sqlite_bench(args: argparse.Namespace, cycles: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-write-"))
    try:
        main = folder / "main.db"
        url = f"sqlite:///{main}"
        await asyncio.to_thread(upgrade, url)
        db = open_database(url)
        try:
            began = time.perf_counter()
            world = await populate(db, args.users)
            print(f"SQLite {main}: {args.users:,} users in {time.perf_counter() - began:.1f} s")
        finally:
            await db.dispose()
        checkpoint(main)
        for copy in ("record.db", "replay.db"):
            shutil.copy(main, folder / copy)
        ops = await record(f"sqlite:///{folder / 'record.db'}", world, cycles, args.warmup)
        db = open_database(url)
        try:
            timings = await drive(db, world, cycles, args.warmup)
        finally:
            await db.dispose()
        baseline = replay(folder / "replay.db", ops, args.warmup * (2 + len(REPORTS)))
        per_kind = {kind: statistics.fmean(len(s) for k, s in ops if k == kind) for kind in KINDS}
        print(
            "statements per operation (with BEGIN and COMMIT): "
            + ", ".join(f"{kind} {n:.1f}" for kind, n in per_kind.items())
        )
        show(
            "SQLite: app.lifecycle in a unit of work vs the same statements in sqlite3",
            timings,
            baseline,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def postgres_bench(args: argparse.Namespace, cycles: int) -> None:
    server = make_url(args.postgres)
    async with throwaway.database(args.postgres, "syncstatus_bench") as url:
        await asyncio.to_thread(upgrade, url)
        db = open_database(url)
        try:
            world = await populate(db, args.users)
            timings = await drive(db, world, cycles, args.warmup)
        finally:
            await db.dispose()
    show(f"PostgreSQL ({server.host}:{server.port}): app.lifecycle in a unit of work", timings)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--ops", type=int, default=2_000, help="timed operations")
    parser.add_argument("--warmup", type=int, default=50, help="untimed runs first")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, default=None)
    args = parser.parse_args()
    cycles = args.ops // (2 + len(REPORTS))
    if args.warmup + cycles > args.users:
        parser.error("needs a user per run: --users >= --warmup + --ops / 5")
    await sqlite_bench(args, cycles)
    if args.postgres:
        await postgres_bench(args, cycles)


if __name__ == "__main__":
    asyncio.run(main())
