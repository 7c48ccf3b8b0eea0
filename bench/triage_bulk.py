"""Failure triage's bulk work at scale, in process on the seeded SQLite file of bench/queries.py
(run that first; it seeds 1,000,000 users), or on a seeded PostgreSQL database:

    .venv/bin/python bench/triage_bulk.py [--users N] [--db PATH] [--export-rows N]
        [--postgres URL] [--scope finance,all] [--no-worker] [--only request|export]

- requestSyncs over one policy's users (the seed's "Finance": about a tenth of them) and over
  all of them (no filter): wall time, write transactions, the longest one (its statements: the
  time it held SQLite's write lock or the users' row locks; and as its caller waited for it,
  queueing and commit included), and the latency of a simulated worker's writes (claim,
  report, finish) meanwhile, beside the same worker's latency before it (the baseline, same
  run). Each scope runs on a fresh copy of the seeded data (a copied SQLite file, or a
  PostgreSQL database made from the seeded one as a template), dropped afterwards.
  On PostgreSQL also the WAL the request wrote (pg_current_wal_lsn before and after; full-page
  images and records from pg_stat_wal), checkpoints meanwhile (pg_stat_bgwriter), all of them
  server-wide (other databases' work counts), and what the backends waited on meanwhile
  (bench/pg_waits.py samples pg_stat_activity every 5 ms; --no-waits: not).
- the CSV export: rows per second and the process's RSS growth while it streams.
Events are encoded as the server would and dropped (no broker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from bench_tenant import DropEvents  # noqa: E402
from sqlalchemy import Connection, event, make_url, select  # noqa: E402

from app.events.messages import Publisher  # noqa: E402
from app.lifecycle import bulk_requests, transitions  # noqa: E402
from app.reads.users import UserFilter  # noqa: E402
from app.store.engine import Database, open_database  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from app.store.models import Policy, Tenant  # noqa: E402
from app.store.unit_of_work import write  # noqa: E402
from app.web.csv_export import _rows  # noqa: E402

TENANT = "Bench"
BASELINE_SECONDS = 10.0


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def rss_mb() -> float:
    """Anonymous resident memory: SQLite maps the database file (mmap_size), and its pages
    read by a full export count in VmRSS though they are the OS's file cache."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def worker(
    db: Database, publisher: Publisher, tenant_id: int, stop: asyncio.Event, into: list[float]
) -> None:
    """A sync worker's writes as fast as they go: claim 2 runs, report each, finish each."""
    while not stop.is_set():

        def claim(conn: Connection, now: int) -> Any:
            return transitions.claim_due_runs(conn, tenant_id, now, 2)

        started = time.perf_counter()
        runs = await write(db, publisher, claim)
        into.append((time.perf_counter() - started) * 1000)
        for run in runs:
            for finishing in (False, True):

                def step(
                    conn: Connection, now: int, run_id: int = run.id, end: bool = finishing
                ) -> Any:
                    found, user = transitions.load_run(conn, tenant_id, run_id)
                    if end:
                        done, event = transitions.finish_run(conn, found, user, now)
                        return done, [event]
                    return transitions.report_progress(conn, found, user, now, 10, 3)

                started = time.perf_counter()
                await write(db, publisher, step)
                into.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.005)


async def bench(
    url: str,
    export_rows: int,
    parts: set[str],
    scopes: list[str],
    with_worker: bool,
    waits: bool,
) -> None:
    if "request" in parts:
        for scope in scopes:
            async with working_copy(url) as copy:
                db = open_database(copy)
                try:
                    await request_part(db, scope, with_worker, waits)
                finally:
                    await db.dispose()
    if "export" in parts:
        db = open_database(url)
        try:
            await export_part(db, (await ids(db))[0], export_rows)
        finally:
            await db.dispose()


async def ids(db: Database) -> tuple[int, int]:
    """The bench tenant's id and its Finance policy's."""
    async with db.read() as session:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.name == TENANT))
        finance = await session.scalar(
            select(Policy.id).where(Policy.tenant_id == tenant_id, Policy.name == "Finance")
        )
    return int(tenant_id or 0), int(finance or 0)


@contextlib.asynccontextmanager
async def working_copy(url: str) -> AsyncIterator[str]:
    """A copy of the seeded data, dropped afterwards: each run starts from the same state. On
    PostgreSQL copied as files (FILE_COPY: a checkpoint, no WAL), not through the WAL (the
    default: 1.5 GB of it at 1,000,000 users, whose checkpoints then ran during the request),
    so each run starts just after a checkpoint: every page it first writes logs a full-page
    image, as in production."""
    if url.startswith("sqlite"):
        source = Path(make_url(url).database or "")
        copy = source.with_name(f"{source.stem}-copy-{os.getpid()}.db")
        await asyncio.to_thread(_checkpointed_copy, source, copy)
        try:
            yield f"sqlite+aiosqlite:///{copy}"
        finally:
            await asyncio.to_thread(_remove, copy)
        return
    seeded = make_url(url)
    admin = seeded.set(drivername="postgresql", database="postgres")
    name = f"{seeded.database}_copy_{os.getpid()}"
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{seeded.database}" STRATEGY FILE_COPY'
        )
        try:
            yield seeded.set(database=name).render_as_string(hide_password=False)
        finally:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _remove(db_file: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)


def _checkpointed_copy(source: Path, copy: Path) -> None:
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copyfile(source, copy)


WAL_STATS = """
SELECT pg_current_wal_lsn(), w.wal_records, w.wal_fpi, w.wal_bytes, w.wal_buffers_full,
    b.checkpoints_timed + b.checkpoints_req
FROM pg_stat_wal w, pg_stat_bgwriter b
"""


@contextlib.asynccontextmanager
async def wal_watch(db: Database, waits: bool) -> AsyncIterator[None]:
    """PostgreSQL: prints the WAL written, checkpoints and backends' waits while the block ran."""
    if db.dialect != "postgresql":
        yield
        return
    url = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(url)
    sampler = None
    if waits:
        sampler = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "pg_waits.py"),
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
    try:
        before = await conn.fetchrow(WAL_STATS)
        yield
        after = await conn.fetchrow(WAL_STATS)
        lsn = await conn.fetchval("SELECT pg_wal_lsn_diff($1, $2)", after[0], before[0])
        print(
            f"  WAL (server-wide): {float(lsn) / 1e6:,.0f} MB, {after[1] - before[1]:,} records, "
            f"{after[2] - before[2]:,} full-page images "
            f"({float(after[3] - before[3]) / 1e6:,.0f} MB per pg_stat_wal), "
            f"{after[4] - before[4]:,} times wal_buffers full, "
            f"{after[5] - before[5]} checkpoints",
            flush=True,
        )
    finally:
        await conn.close()
        if sampler is not None:
            out, _ = await sampler.communicate(b"")
            print(f"  waits sampled: {out.decode().strip()}", flush=True)


@contextlib.contextmanager
def statement_times(db: Database) -> Any:
    """Prints the slowest statements (by their longest run) executed in the block: which
    statement a worker's write waited in."""
    times: dict[str, list[float]] = {}
    engine = db.write_engine.sync_engine

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        took = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        times.setdefault(" ".join(statement.split())[:60], []).append(took * 1000)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    for name, took in sorted(times.items(), key=lambda item: -max(item[1]))[:6]:
        print(
            f"  statement {name!r}: {len(took)} runs, p50 {statistics.median(took):.1f} ms, "
            f"max {max(took):.1f} ms",
            flush=True,
        )


async def request_part(db: Database, scope: str, with_worker: bool, waits: bool) -> None:
    publisher = Publisher(DropEvents())
    tenant_id, finance = await ids(db)
    filt = UserFilter(policy_id=finance) if scope == "finance" else UserFilter()
    baseline: list[float] = []
    during: list[float] = []
    if with_worker:
        stop = asyncio.Event()
        task = asyncio.create_task(worker(db, publisher, tenant_id, stop, baseline))
        await asyncio.sleep(BASELINE_SECONDS)
        stop.set()
        await task
    stop = asyncio.Event()
    if with_worker:
        task = asyncio.create_task(worker(db, publisher, tenant_id, stop, during))
    async with wal_watch(db, waits):
        with statement_times(db):
            started = time.perf_counter()
            result = await bulk_requests.request_syncs(db, publisher, tenant_id, filt)
            wall = time.perf_counter() - started
            stop.set()
            if with_worker:
                await task
    longest_write = getattr(result, "longest_write_seconds", None)
    # Before longest_write_seconds, longest_seconds counted the statements, not the commit.
    what = " (its statements)" if longest_write is None else " (to its commit)"
    waited = f", {longest_write * 1000:.1f} ms as waited for" if longest_write else ""
    slow = getattr(result, "slow", None)
    if slow is not None:
        waited += f"; {slow} over 100 ms"
    held = getattr(result, "held", None)
    if held:
        waited += f"; each p50 {pct(held, 50) * 1000:.1f} ms, p99 {pct(held, 99) * 1000:.1f} ms"
    print(
        f"{db.dialect} requestSyncs({scope}{'' if with_worker else ', no worker'}): "
        f"{result.requested:,} requested, {result.skipped:,} skipped in {wall:.2f} s wall; "
        f"{result.transactions} write transactions, the longest "
        f"{result.longest_seconds * 1000:.1f} ms{what}{waited} (target ~100 ms); load "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for name, values in (("before (baseline)", baseline), ("during requestSyncs", during)):
        if values:
            print(
                f"  worker writes {name}: {len(values)} writes, p50 "
                f"{statistics.median(values):.2f} ms, p99 {pct(values, 99):.2f} ms, max "
                f"{max(values):.2f} ms",
                flush=True,
            )


async def export_part(db: Database, tenant_id: int, export_rows: int) -> None:
    before = peak = rss_mb()
    rows = size = 0
    started = time.perf_counter()
    services: Any = SimpleNamespace(db=db)
    async for chunk in _rows(services, tenant_id, UserFilter(), "EMAIL_ASC"):
        rows += chunk.count(b"\r\n")
        size += len(chunk)
        peak = max(peak, rss_mb())
        if rows >= export_rows:
            break
    seconds = time.perf_counter() - started
    print(
        f"CSV export (no filter, EMAIL_ASC): {rows - 1:,} rows, {size / 1e6:,.0f} MB in "
        f"{seconds:.1f} s: {(rows - 1) / seconds:,.0f} rows/s; RSS {before:.0f} MB before, "
        f"peak {peak:.0f} MB (growth {peak - before:.0f} MB; target <= 100 MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--postgres", metavar="URL", help="a seeded PostgreSQL database")
    parser.add_argument("--scope", default="finance,all", help="requestSyncs over: finance,all")
    parser.add_argument(
        "--no-worker", action="store_true", help="requestSyncs alone, no simulated worker"
    )
    parser.add_argument(
        "--no-waits", action="store_true", help="PostgreSQL: no pg_stat_activity sampling"
    )
    parser.add_argument("--export-rows", type=int, default=10**9)
    parser.add_argument("--only", choices=["request", "export"], help="run one part")
    args = parser.parse_args()
    if args.postgres:
        url = args.postgres
        where = make_url(url).render_as_string(hide_password=True)
    else:
        db_path = (
            args.db or Path(tempfile.gettempdir()) / f"syncstatus-bench-{args.users}.db"
        ).resolve()
        if not db_path.exists():
            raise SystemExit(
                f"{db_path} is missing: run bench/queries.py --users {args.users} first"
            )
        url, where = f"sqlite+aiosqlite:///{db_path}", str(db_path)
        upgrade(url)
    print(
        f"syncstatus triage bulk benchmark on {where}, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    parts = {args.only} if args.only else {"request", "export"}
    scopes = args.scope.split(",")
    asyncio.run(bench(url, args.export_rows, parts, scopes, not args.no_worker, not args.no_waits))


if __name__ == "__main__":
    main()
