"""Idle memory per open dashboard, and where it goes: the server in this process, traced.

    .venv/bin/python bench/idle_memory.py [--dashboards 1000] [--top 25] [--no-trace]

Runs the app under uvicorn with `syncstatus serve`'s options (app.cli.main.uvicorn_options) in
this process, on a fresh SQLite tenant of 10,000 users and the in-memory broker, then opens N
dashboards (bench/ws_clients.py in client processes: a page of 10 users plus the metrics each,
the page's own queries) and waits until all are live and idle. Prints the RSS growth per
dashboard (/proc, after a full collection), the Python heap's growth per dashboard
(tracemalloc), and the allocation sites that hold most of it, grouped by file and line.
Tracing slows the process and adds its own bookkeeping to RSS: --no-trace for the RSS alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import linecache
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_tenant import populate  # noqa: E402

from app.auth.tokens import create_token  # noqa: E402
from app.cli.main import uvicorn_options  # noqa: E402
from app.domain.ids import encode_id  # noqa: E402
from app.store.engine import open_database  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from app.web.asgi import create_app  # noqa: E402
from app.web.settings import Settings  # noqa: E402
from tests.server import free_port  # noqa: E402

PAGE = 10
PER_CLIENT_PROCESS = 2500


async def tenant(database_url: str, users: int) -> tuple[str, list[int]]:
    """A viewer token and the user row ids of a fresh tenant."""
    await asyncio.to_thread(upgrade, database_url)
    db = open_database(database_url)
    try:
        bench = await populate(db, users)
        async with db.write() as session:
            viewer = await create_token(session, bench.tenant_id, "bench viewer", "VIEWER")
    finally:
        await db.dispose()
    return viewer, bench.user_ids


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def clients(url: str, token: str, pages: list[list[int]], folder: str) -> list[subprocess.Popen]:
    procs = []
    for n, start in enumerate(range(0, len(pages), PER_CLIENT_PROCESS)):
        spec = Path(folder, f"spec{n}.json")
        chunk = pages[start : start + PER_CLIENT_PROCESS]
        spec.write_text(
            json.dumps({"pages": [[encode_id("SyncUser", u) for u in p] for p in chunk]})
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench" / "ws_clients.py"),
                    url,
                    token,
                    str(spec),
                    str(Path(folder, f"out{n}.json")),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    return procs


async def ready(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line.startswith("ready"):
            raise RuntimeError(f"client process said {line!r}")


def where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for prefix in (str(ROOT) + "/", sys.prefix + "/lib/python3.11/site-packages/", sys.base_prefix):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return f"{name}:{frame.lineno}  {linecache.getline(frame.filename, frame.lineno).strip()[:70]}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dashboards", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-trace", action="store_true")
    parser.add_argument(
        "--ws",
        help="another of uvicorn's WebSocket implementations instead of serve's (to compare: "
        "websockets, websockets-sansio, wsproto; without serve's abort and frame writer)",
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="fanout-idle-") as folder:
        database_url = f"sqlite+aiosqlite:///{folder}/bench.db"
        viewer, users = await tenant(database_url, 10_000)
        port = free_port()
        settings = dataclasses.replace(
            Settings.from_env(),
            database_url=database_url,
            port=port,
            broadcast_url="memory://",
            log_level="warning",
        )
        options = uvicorn_options(settings)
        if args.ws:
            options["ws"] = args.ws
        server = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.05)
        url = f"ws://127.0.0.1:{port}/graphql"
        pages_total = len(users) // PAGE
        pages = [users[(i % pages_total) * PAGE :][:PAGE] for i in range(args.dashboards)]
        warm = clients(url, viewer, pages[:20], tempfile.mkdtemp(dir=folder))
        await ready(warm)  # the first subscriptions build caches (schema, documents) once
        await asyncio.sleep(1)
        gc.collect()
        if not args.no_trace:
            tracemalloc.start(1)
        before = rss_kb(os.getpid())
        heap0 = None if args.no_trace else tracemalloc.take_snapshot()
        began = time.monotonic()
        procs = clients(url, viewer, pages, folder)
        await ready(procs)
        connected = time.monotonic() - began
        await asyncio.sleep(3)
        gc.collect()
        after = rss_kb(os.getpid())
        n = args.dashboards
        print(
            f"{n} dashboards live in {connected:.1f} s (ws: {args.ws or 'serve'}); "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        print(
            f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MB: {(after - before) / n:.1f} KB "
            "per idle dashboard" + ("" if args.no_trace else " (tracing adds its own)")
        )
        if heap0 is not None:
            heap1 = tracemalloc.take_snapshot()
            stats = heap1.compare_to(heap0, "lineno")
            total = sum(s.size_diff for s in stats)
            print(f"Python heap (tracemalloc): {total / n / 1024:.2f} KB per idle dashboard")
            print(f"top {args.top} allocation sites, bytes per dashboard (blocks per dashboard):")
            for stat in stats[: args.top]:
                print(
                    f"  {stat.size_diff / n:8.0f}  ({stat.count_diff / n:5.1f})  "
                    f"{where(stat.traceback[0])}"
                )
            tracemalloc.stop()
        for proc in [*procs, *warm]:
            assert proc.stdin is not None
            proc.stdin.write("exit\n")
            proc.stdin.flush()
        for proc in [*procs, *warm]:
            proc.wait(timeout=60)
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
