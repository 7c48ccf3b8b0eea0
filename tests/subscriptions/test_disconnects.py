"""A client that disconnects leaves nothing behind: no subscriber, no task, no memory growth
over thousands of connect/disconnect cycles, however it leaves (clean close, complete, abort
mid-stream, before connection_init, right after subscribing).

Memory is judged once the collector has settled: the oldest generation is collected about a
tenth as often as CPython's default (app/ops/runtime.py), so the cyclic garbage of the first few
thousand closed connections waits for it; after that, more cycles must not grow the process.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import suppress

import websockets

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.support import (
    METRICS_UPDATES,
    USER_UPDATES,
    add_users,
    eventually,
    health,
    raw_socket,
    receive,
    send,
    subscribe,
)

WARMUP = 6000
ROUNDS = 5
CYCLES = 3000
CONCURRENCY = 40
# RSS is a coarse leak detector: the allocator grows it in steps of 1-10 MB in some rounds and
# not others (per-round growth such as [3820, 112, 4008, 1604, 52] KB, alike on the code of a
# week before; a bound on the total failed 2 runs in 5) and reuses what was freed, so a leak of
# 1 KB per connection_init, injected to try, stayed inside that noise. This bound catches a
# leak that grows RSS by 1 MiB or more in every round; the exact checks are the task,
# subscriber and tenant-feed counts (_settled).
MAX_QUIET_ROUND_KB = 1024


async def _cycle(server: Server, token: str, ids: list[str], n: int) -> None:
    how = n % 5
    with suppress(websockets.ConnectionClosed, OSError, TimeoutError):
        async with raw_socket(server, token, init=how != 0) as ws:
            if how == 0:
                return  # gone before connection_init
            await subscribe(ws, "u", USER_UPDATES, ids=ids[n % len(ids) :][:10])
            await subscribe(ws, "m", METRICS_UPDATES)
            if how == 1:
                return  # gone right after subscribing, racing the hub
            assert (await receive(ws))["id"] == "m"  # both subscriptions are live now
            if how == 2:
                await send(ws, {"id": "u", "type": "complete"})
                await send(ws, {"id": "m", "type": "complete"})
            elif how == 3:
                ws.transport.abort()  # no close frame: a lost peer


async def _cycles(server: Server, token: str, ids: list[str], count: int) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> None:
        async with gate:
            await _cycle(server, token, ids, n)

    async with asyncio.timeout(300):
        await asyncio.gather(*(one(n) for n in range(count)))


def _settled(server: Server, baseline_tasks: int) -> bool:
    stats = health(server)
    subscriptions = stats["subscriptions"]
    return (
        subscriptions.get("user_subscribers", 0) == 0
        and subscriptions.get("metrics_subscribers", 0) == 0
        and stats["process"]["tasks"] <= baseline_tasks
    )


async def test_thousands_of_connect_disconnect_cycles_leave_nothing(
    server: Server, tenant: Tenant
) -> None:
    _, ids = await add_users(tenant, 50)
    token = tenant.viewer.token
    assert token is not None
    await _cycles(server, token, ids, WARMUP)
    await eventually(lambda: _settled(server, 10_000), within=20)
    before = health(server)
    rss = [before["process"]["rss_kb"]]
    for _ in range(ROUNDS):
        await _cycles(server, token, ids, CYCLES)
        await eventually(lambda: _settled(server, before["process"]["tasks"]), within=30)
        rss.append(health(server)["process"]["rss_kb"])
    after = health(server)
    assert after["subscriptions"]["tenants"] == 0, "idle tenant feeds are closed"
    growth = [b - a for a, b in itertools.pairwise(rss)]
    assert min(growth) < MAX_QUIET_ROUND_KB, (
        f"RSS grew in every round of {CYCLES} cycles (KB per round: {growth})"
    )
    # The collector ran meanwhile, and /healthz tells how long it paused the process.
    pauses = after["process"]["gc_longest_pause_ms"]
    assert len(pauses) == 3 and pauses[0] > 0, pauses
