"""The issue's two expensive queries, with the cost limit off and on, and what they do to a
trivial query sent meanwhile.

    .venv/bin/python bench/cost.py [--users N] [--seconds S] [--clients C]

Seeds N users (default 5,000; 1-3 runs each) into a temporary SQLite file, then for each of
SYNCSTATUS_MAX_QUERY_COST=0 (off) and the default (5000) starts `syncstatus serve` and, for each
expensive query, runs C clients (default 4) sending it in a loop for S seconds (default 10) while
one more client sends the page's metrics query every 20 ms. Printed: the expensive query's
latency (p50/p99), its response size and how many were answered; the metrics query's p50/p99
(client round trip on loopback) beside a baseline measured alone, in the same run.

The queries: 150 aliases of syncUsers(first: 100) (12 KB, as in the issue), and 30 aliased
runs(first: 100) nested under syncUsers(first: 100) (5.6 KB). With --before REV the code of that
revision is served first, on the same database (e.g. --before "$(git merge-base HEAD main)").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TENANT = "Bench"
SYNCSTATUS = str(Path(sys.executable).with_name("syncstatus"))  # setup, with this tree's code
METRICS = {"query": "query M { syncMetrics { failedSyncs syncsInProgress changesLast24h } }"}
USER = "id email destinationEmail status latestSyncAt version unresolvedFailureCount"
ALIASES = (
    "{ "
    + " ".join(
        f"a{i}: syncUsers(first: 100) {{ edges {{ node {{ {USER} }} }} }}" for i in range(150)
    )
    + " }"
)
RUN = "id kind service state startedAt finishedAt itemsTotal itemsProcessed changes"
NESTED = (
    "{ syncUsers(first: 100) { edges { node { id "
    + " ".join(f"r{i}: runs(first: 100) {{ edges {{ node {{ {RUN} }} }} }}" for i in range(30))
    + " } } } }"
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [SYNCSTATUS, *args], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return done.stdout


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def probe(url: str, headers: dict[str, str], stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=120, headers=headers) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post(url, json=METRICS)
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)
    return latencies


async def hammer(
    url: str, headers: dict[str, str], query: str, stop: asyncio.Event
) -> list[tuple[float, int, str | None]]:
    """(ms, response bytes, the error code if refused) of each request."""
    results: list[tuple[float, int, str | None]] = []
    async with httpx.AsyncClient(timeout=300, headers=headers) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post(url, json={"query": query})
            body = response.json()
            code = None
            if body.get("errors"):
                code = str(body["errors"][0].get("extensions", {}).get("code"))
            millis = (time.perf_counter() - started) * 1000
            results.append((millis, len(response.content), code))
    return results


async def measure(url: str, token: str, seconds: float, clients: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    stop = asyncio.Event()
    alone = asyncio.create_task(probe(url, headers, stop))
    await asyncio.sleep(min(5.0, seconds))
    stop.set()
    baseline = await alone
    print(
        f"  metrics alone:            p50 {statistics.median(baseline):7.1f} ms"
        f"  p99 {percentile(baseline, 0.99):7.1f} ms  ({len(baseline)} requests)"
    )
    for name, query in (("150 aliases", ALIASES), ("nested runs", NESTED)):
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(url, headers, stop))
        workers = [asyncio.create_task(hammer(url, headers, query, stop)) for _ in range(clients)]
        await asyncio.sleep(seconds)
        stop.set()
        during = await prober
        done = [r for w in workers for r in await w]
        times = [t for t, _, _ in done]
        refused = Counter(code for _, _, code in done if code)
        size = statistics.median([s for _, s, _ in done]) if done else 0
        print(
            f"  {name} ({len(query) / 1024:.1f} KB) x{clients}:"
            f" p50 {statistics.median(times):8.1f} ms  p99 {percentile(times, 0.99):8.1f} ms"
            f"  {size / 1024:8.1f} KB  {len(done)} answered, errors: {dict(refused)}"
        )
        print(
            f"    metrics meanwhile:      p50 {statistics.median(during):7.1f} ms"
            f"  p99 {percentile(during, 0.99):7.1f} ms  max {max(during):7.1f} ms"
        )


def serve(env: dict[str, str], port: int, log: Path, code: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],  # any revision's layout
        env={**env, "PYTHONPATH": str(code)},
        cwd=code,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")


def checkout(rev: str, folder: Path) -> Path:
    """The project's code at `rev`, unpacked beside the benchmark's database."""
    target = folder / "before"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--before",
        default="",
        help="also serve the code of this git revision (e.g. the branch's merge base)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as name:
        folder = Path(name)
        env = {
            **os.environ,
            "SYNCSTATUS_DATABASE_URL": f"sqlite+aiosqlite:///{folder}/bench.db",
            "SYNCSTATUS_LOG_LEVEL": "warning",
        }
        cli(env, "db", "upgrade")
        cli(env, "seed", "--tenant", TENANT, "--users", str(args.users))
        token = cli(env, "token", "create", "--tenant", TENANT, "--role", "viewer").split()[-1]
        runs: list[tuple[str, Path, dict[str, str]]] = []
        if args.before:
            runs.append((f"before ({args.before})", checkout(args.before, folder), {}))
        runs += [
            (
                "cost limit off (SYNCSTATUS_MAX_QUERY_COST=0)",
                ROOT,
                {"SYNCSTATUS_MAX_QUERY_COST": "0"},
            ),
            ("limits on (defaults)", ROOT, {}),
        ]
        for label, code, overrides in runs:
            port = free_port()
            process = serve({**env, **overrides}, port, folder / f"serve-{port}.log", code)
            try:
                print(f"{label}, {args.users} users:", flush=True)
                asyncio.run(
                    measure(f"http://127.0.0.1:{port}/graphql", token, args.seconds, args.clients)
                )
            finally:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
