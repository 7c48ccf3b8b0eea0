"""A subscriber that reads slowly gets the latest state per user, never an unbounded queue, and
slows nobody else; one that falls hopelessly behind is cut off with an error (it refetches).

The slow reader is a raw socket with a tiny kernel receive buffer that stops reading, and a
subscription whose every message is ~200 KB (aliases of a 2000-character policy description),
so the server's buffers (the kernel's grow to 4 MB) fill after a few events and its sends
block: from then on the subscriber's mailbox is what holds its events. The connection's byte
budget (SYNCSTATUS_WS_BACKLOG_BYTES, 1 MiB) holds five such messages: a slow reader of four
users keeps their latest states; one of eight users cannot even hold those, and is cut off.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.support import (
    USER_UPDATES,
    Stream,
    Worker,
    add_users,
    health,
    live_user_stream,
    raw_socket,
    receive,
    subscribe,
)

# 100 aliases: the most a document may hold (schema/limits.py).
ALIASES = " ".join(f"p{i}: policy {{ description }}" for i in range(100))
DESCRIPTION = "x" * 2000
BIG_USER_UPDATES = (
    "subscription($ids: [ID!]) { syncUserUpdated(userIds: $ids) "
    f"{{ id status version {ALIASES} }} }}"
)
SLOW: dict[str, Any] = {"receive_buffer": 4096, "max_queue": 1, "max_size": None}


async def _make_live(ws: Any, tenant: Tenant, user_id: str, fast: Stream | None) -> None:
    """Pokes until the slow socket (and the fast stream) received something."""
    from tests.subscriptions.support import REQUEST_SYNC

    async with asyncio.timeout(10):
        while True:
            await tenant.operator.execute(REQUEST_SYNC, u=user_id)
            try:
                await receive(ws, within=0.5)
                break
            except TimeoutError:
                continue
    if fast is not None:
        await live_user_stream(fast, tenant, user_id)
    async with asyncio.timeout(10):  # drop the echoes of the pokes
        while True:
            try:
                await receive(ws, within=0.5)
            except TimeoutError:
                break


async def _read_all(ws: Any, quiet: float = 1.5) -> list[dict[str, Any]]:
    messages = []
    while True:
        try:
            async with asyncio.timeout(quiet):
                message = json.loads(await ws.recv())
            if message.get("type") != "ping":  # the server's keep-alive
                messages.append(message)
        except TimeoutError:
            return messages
        except websockets.ConnectionClosed:
            return messages


async def test_slow_reader_gets_latest_state_and_slows_nobody(
    server: Server, tenant: Tenant
) -> None:
    _, ids = await add_users(tenant, 4, description=DESCRIPTION)
    worker = Worker(tenant)
    async with (
        raw_socket(server, tenant.viewer.token, **SLOW) as slow,
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES) as fast,
    ):
        await subscribe(slow, "slow", BIG_USER_UPDATES)
        await _make_live(slow, tenant, ids[0], fast)
        # The slow socket now stops reading while runs go on.
        final_version: dict[str, int] = {}
        lag: list[float] = []
        peak_pending = 0
        for _round in range(2):
            for user_id in ids:
                await worker.run(user_id, progress_reports=3)
                done_at = time.monotonic()

                def synced(i: dict[str, Any], u: str = user_id) -> bool:
                    return (
                        i["syncUserUpdated"]["id"] == u
                        and i["syncUserUpdated"]["status"] == "SYNCED"
                    )

                items = await fast.until(synced, within=5)
                lag.append(time.monotonic() - done_at)
                final_version[user_id] = items[-1]["syncUserUpdated"]["version"]
                peak_pending = max(peak_pending, health(server)["subscriptions"]["pending_events"])
        assert max(lag) < 1.0, f"the fast subscriber was slowed: {lag}"
        assert 0 < peak_pending <= len(ids) * 8, peak_pending  # the slow reader's bounded mailbox
        # The slow reader catches up: it gets the latest state of every user.
        messages = await _read_all(slow)
    updates = [m["payload"]["data"]["syncUserUpdated"] for m in messages if m["type"] == "next"]
    assert all(m["type"] == "next" and "errors" not in m["payload"] for m in messages)
    latest: dict[str, int] = {}
    for update in updates:
        assert update["version"] > latest.get(update["id"], 0), "version order per user"
        latest[update["id"]] = update["version"]
    assert latest == final_version
    published = len(ids) * 2 * 5  # start, 3 progress, finish per run
    assert len(updates) < published, "coalesced while the reader was stuck"


async def test_hopelessly_slow_reader_is_cut_off_with_an_error(
    server: Server, tenant: Tenant
) -> None:
    _, ids = await add_users(tenant, 8, description=DESCRIPTION)
    worker = Worker(tenant)
    async with raw_socket(server, tenant.viewer.token, **SLOW) as slow:
        await subscribe(slow, "slow", BIG_USER_UPDATES, ids=ids)
        await _make_live(slow, tenant, ids[0], None)
        for n in range(60):  # starts and finishes pile up; even the latest states are too big
            await worker.run(ids[n % len(ids)], progress_reports=0)
        messages = await _read_all(slow)
        await subscribe(slow, "again", "subscription { syncMetricsUpdated { totalUsers } }")
        assert (await receive(slow))["id"] == "again", "the connection itself stays usable"
    errors = [m for m in messages if m["type"] == "next" and "errors" in m["payload"]]
    assert len(errors) == 1, [m["type"] for m in messages]
    assert errors[0]["payload"]["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert messages[-1] == {"id": "slow", "type": "complete"}
    assert len(messages) < 120, "never more than the bounded mailbox"
