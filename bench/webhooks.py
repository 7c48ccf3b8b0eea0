"""Webhooks under load: do deliveries slow the workers' run reporting, and how fast do they go?

    .venv/bin/python bench/webhooks.py [--rate 500] [--seconds 20] [--postgres [URL]]

Two runs of a real server (`syncstatus serve`, its own fresh database each), driven the same way:
workers report runs over HTTP at --rate run updates a second (start, two progress reports,
finish; 10% of the runs finish FAILED) for --seconds. The baseline run has no webhook; the other
has two receivers on 127.0.0.1 subscribed to RUN_FAILED: a fast one (answers 204 at once) and a
slow one (answers after 2 s, 500 half the time, so its deliveries are retried).

Printed: p50 and p99 of the workers' mutations in both runs (the target: webhooks add at most
10% to the p99), deliveries per second at the receivers, and the delay from a failed run's
finish (the finish request was sent) to its delivery at the fast receiver, p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.api_tests.conftest import admin_token  # noqa: E402
from tests.server import postgres_database, run_server, sqlite_database  # noqa: E402
from tests.webhook_receiver import Receiver  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
LANES = 50  # users reported on at once
FAIL_RATIO = 0.1
WARMUP_SECONDS = 2.0
ENV = {"SYNCSTATUS_WEBHOOK_ALLOW_PRIVATE": "1", "SYNCSTATUS_LOG_LEVEL": "error"}
SECRET_KEY = "bench-only-server-key-0123456789abcdefgh"

ADD = "mutation($u: [SyncUserInput!]!) { addSyncUsers(users: $u) { id } }"
TOKEN = 'mutation { createApiToken(name: "bench", role: WORKER) { token } }'
START = "mutation($u: ID!) { startSyncRun(userId: $u, itemsTotal: 100) { id } }"
REPORT = "mutation($r: ID!, $n: Int!) { reportSyncProgress(runId: $r, itemsProcessed: $n, changes: $n) { id } }"  # noqa: E501
FINISH = "mutation($r: ID!, $c: String) { finishSyncRun(runId: $r, errorCode: $c) { id } }"
HOOK = """mutation($url: String!) { createWebhook(url: $url, events: [RUN_FAILED]) { secret } }"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)  # seconds, after the warm-up
    failed_finishes: dict[str, float] = field(default_factory=dict)  # run id -> finish sent
    errors: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)  # contract code or client error


async def gql(client: httpx.AsyncClient, token: str, query: str, **variables: Any) -> Any:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


async def drive(url: str, worker: str, users: list[str], rate: float, seconds: float) -> Load:
    """LANES lanes, each one user's runs after another, paced to rate/LANES updates a second."""
    load = Load()
    began = time.monotonic()
    interval = LANES / rate
    limits = httpx.Limits(max_connections=LANES, max_keepalive_connections=LANES)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def update(query: str, **variables: Any) -> Any:
            sent = time.monotonic()
            try:
                return await gql(client, worker, query, **variables)
            except RuntimeError as failed:
                load.errors += 1
                for error in failed.args[0]:
                    load.error_codes[error.get("extensions", {}).get("code", "?")] += 1
                return None
            except httpx.HTTPError as failed:
                load.errors += 1
                load.error_codes[type(failed).__name__] += 1
                return None
            finally:
                if sent - began >= WARMUP_SECONDS:
                    load.latencies.append(time.monotonic() - sent)

        async def lane(index: int) -> None:
            next_at = began + random.uniform(0, interval)
            steps = 0
            user = users[index]

            async def paced() -> bool:
                nonlocal next_at, steps
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                steps += 1
                return time.monotonic() - began < seconds

            while await paced():
                started = await update(START, u=user)
                if started is None:
                    continue
                run = started["startSyncRun"]["id"]
                for n in (30, 60):
                    if not await paced():
                        break
                    await update(REPORT, r=run, n=n)
                await paced()
                failing = random.random() < FAIL_RATIO
                sent = time.monotonic()
                await update(FINISH, r=run, c="ERR_BENCH" if failing else None)
                if failing:
                    load.failed_finishes[run] = sent

        await asyncio.gather(*(lane(i) for i in range(LANES)))
    return load


@contextmanager
def database(postgres: str | None) -> Iterator[str]:
    if postgres:
        with postgres_database(postgres) as url:
            yield url
    else:
        with sqlite_database() as url:
            yield url


async def one_run(args: argparse.Namespace, with_webhooks: bool) -> dict[str, Any]:
    fast = Receiver(status=204)
    slow = Receiver(status=lambda: random.choice((200, 500)), delay=2.0)
    with database(args.postgres) as db_url:
        env = {**ENV, "SYNCSTATUS_SECRET_KEY": SECRET_KEY}
        with run_server(db_url, env=env) as server, fast, slow:
            admin = await asyncio.to_thread(admin_token, db_url, "Bench")
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                worker = (await gql(client, admin, TOKEN))["createApiToken"]["token"]
                batch = [
                    {"email": f"u{i}@bench.example", "destinationEmail": f"u{i}@dest.example"}
                    for i in range(LANES)
                ]
                users = [u["id"] for u in (await gql(client, admin, ADD, u=batch))["addSyncUsers"]]
                if with_webhooks:
                    for receiver in (fast, slow):
                        await gql(client, admin, HOOK, url=receiver.url)
            load_began = time.monotonic()
            load = await drive(server.url, worker, users, args.rate, args.seconds)
            load_ended = time.monotonic()
            if with_webhooks:  # let the fast receiver catch up
                for _ in range(150):
                    if len(fast.received) >= len(load.failed_finishes):
                        break
                    await asyncio.sleep(0.2)
    result: dict[str, Any] = {"load": load, "span": load_ended - load_began}
    if with_webhooks:
        arrived: dict[str, float] = {}
        for received in fast.received:
            run_id = _run_id(received.body)
            arrived.setdefault(run_id, received.at)
        delays = [
            arrived[run] - sent for run, sent in load.failed_finishes.items() if run in arrived
        ]
        window = [r for r in fast.received + slow.received if r.at <= load_ended]
        result.update(
            delays=delays,
            fast=len(fast.received),
            slow=len(slow.received),
            slow_max_in_flight=slow.max_in_flight,
            deliveries_per_second=len(window) / (load_ended - load_began),
        )
    return result


def _run_id(body: bytes) -> str:
    return str(json.loads(body)["data"]["run"]["id"])


def show(name: str, load: Load, span: float) -> None:
    ms = [v * 1000 for v in load.latencies]
    print(
        f"{name:<16} {len(ms) / max(span - WARMUP_SECONDS, 1):7.0f} updates/s  "
        f"p50 {statistics.median(ms):6.2f} ms  p99 {pct(ms, 99):7.2f} ms  "
        f"errors {load.errors}" + (f" {dict(load.error_codes)}" if load.errors else "")
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES)
    args = parser.parse_args()
    print(
        f"{args.rate:.0f} run updates/s for {args.seconds:.0f} s, {LANES} lanes, "
        f"{FAIL_RATIO:.0%} of runs FAILED; {'PostgreSQL' if args.postgres else 'SQLite'}"
    )
    baseline = await one_run(args, with_webhooks=False)
    hooked = await one_run(args, with_webhooks=True)
    show("no webhooks", baseline["load"], baseline["span"])
    show("two webhooks", hooked["load"], hooked["span"])
    base_p99 = pct(baseline["load"].latencies, 99)
    hook_p99 = pct(hooked["load"].latencies, 99)
    print(f"p99 with webhooks / without: {hook_p99 / base_p99:.2f}")
    delays = [d * 1000 for d in hooked["delays"]]
    failed = len(hooked["load"].failed_finishes)
    print(
        f"deliveries: {hooked['deliveries_per_second']:.1f}/s during the load "
        f"(fast {hooked['fast']} of {failed} failed runs, slow {hooked['slow']} attempts, "
        f"slow receiver's max concurrent {hooked['slow_max_in_flight']})"
    )
    if delays:
        print(
            f"finish -> fast receiver: p50 {statistics.median(delays):.0f} ms, "
            f"p99 {pct(delays, 99):.0f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
