"""One token sends the most expensive query the limits admit in a loop while another token
sends the page's metrics query: the second's latency with the limits on, beside the same run
with them off.

    .venv/bin/python bench/rate_limit.py [--users N] [--seconds S] [--clients C]

Seeds N users (default 5,000) into a temporary SQLite file, then for "limits off"
(SYNCSTATUS_MAX_QUERY_COST=0, SYNCSTATUS_RATE_LIMIT=0) and "limits on" (the defaults: cost 5000,
20,000 points per token and minute) starts `syncstatus serve`; C clients (default 2) of the
first token send 50 aliases of syncUsers(first: 100) (cost 5,000: the most the cost limit
admits) for S seconds (default 60) while the second token sends the metrics query every 20 ms.
Printed: the metrics query's p50/p99 (client round trip on loopback) and how many of the
expensive requests were answered and refused (RATE_LIMITED).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from cost import ROOT, TENANT, USER, cli, free_port, hammer, percentile, probe, serve

MOST_EXPENSIVE = (
    "{ "
    + " ".join(
        f"a{i}: syncUsers(first: 100) {{ edges {{ node {{ {USER} }} }} }}" for i in range(50)
    )
    + " }"
)
TARGET_P99_MS = 100.0


async def measure(url: str, heavy: str, light: str, seconds: float, clients: int) -> None:
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(url, {"Authorization": f"Bearer {light}"}, stop))
    headers = {"Authorization": f"Bearer {heavy}"}
    workers = [
        asyncio.create_task(hammer(url, headers, MOST_EXPENSIVE, stop)) for _ in range(clients)
    ]
    await asyncio.sleep(seconds)
    stop.set()
    metrics = await prober
    done = [r for w in workers for r in await w]
    codes = Counter(code or "ok" for _, _, code in done)
    p99 = percentile(metrics, 0.99)
    print(
        f"  metrics (other token): p50 {statistics.median(metrics):7.1f} ms  p99 {p99:7.1f} ms"
        f"  ({len(metrics)} requests; target p99 <= {TARGET_P99_MS:.0f} ms)"
    )
    print(f"  expensive (cost 5000) x{clients}: {len(done)} sent, {dict(codes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as name:
        folder = Path(name)
        env = {
            **os.environ,
            "SYNCSTATUS_DATABASE_URL": f"sqlite+aiosqlite:///{folder}/bench.db",
            "SYNCSTATUS_LOG_LEVEL": "warning",
        }
        cli(env, "db", "upgrade")
        cli(env, "seed", "--tenant", TENANT, "--users", str(args.users))
        tokens = [
            cli(env, "token", "create", "--tenant", TENANT, "--role", "viewer").split()[-1]
            for _ in range(2)
        ]
        off = {"SYNCSTATUS_MAX_QUERY_COST": "0", "SYNCSTATUS_RATE_LIMIT": "0"}
        for label, overrides in (("limits off", off), ("limits on (defaults)", {})):
            port = free_port()
            process = serve({**env, **overrides}, port, folder / f"serve-{port}.log", ROOT)
            try:
                print(f"{label}, {args.users} users, {args.seconds:.0f} s:", flush=True)
                asyncio.run(
                    measure(
                        f"http://127.0.0.1:{port}/graphql",
                        tokens[0],
                        tokens[1],
                        args.seconds,
                        args.clients,
                    )
                )
            finally:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
