"""An open dashboard's subscriptions hold no task of their own (subscriptions/live.py): the
thousands of idle dashboards a process serves cost a socket each, not a task per subscription.
Subscriptions the lean path does not take (a query over the socket, a bad request) still work
the usual way."""

from __future__ import annotations

from contextlib import AsyncExitStack

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.support import (
    METRICS_UPDATES,
    USER_UPDATES,
    Worker,
    add_users,
    eventually,
    health,
    raw_socket,
    receive,
    subscribe,
)

DASHBOARDS = 30


async def test_idle_dashboards_hold_one_task_per_socket_at_most(
    server: Server, tenant: Tenant
) -> None:
    _, ids = await add_users(tenant, 20)
    before = health(server)["process"]["tasks"]
    async with AsyncExitStack() as stack:
        for n in range(DASHBOARDS):
            ws = await stack.enter_async_context(raw_socket(server, tenant.viewer.token))
            await subscribe(ws, "u", USER_UPDATES, ids=ids[n % 10 :][:10])
            await subscribe(ws, "m", METRICS_UPDATES)
            assert (await receive(ws))["id"] == "m"
        stats = health(server)
        assert stats["subscriptions"]["user_subscribers"] == DASHBOARDS
        assert stats["subscriptions"]["metrics_subscribers"] == DASHBOARDS
        # Each socket's ASGI task, plus the tenant's feed tasks; no task per subscription.
        assert stats["process"]["tasks"] - before <= DASHBOARDS + 5, stats["process"]
    await eventually(lambda: health(server)["subscriptions"].get("user_subscribers", 0) == 0)


async def test_a_query_over_the_socket_still_gets_its_answer(
    server: Server, tenant: Tenant
) -> None:
    async with raw_socket(server, tenant.viewer.token) as ws:
        await subscribe(ws, "q", "query { syncMetrics { totalUsers } }")
        answer = await receive(ws)
        assert answer["type"] == "next" and answer["id"] == "q"
        assert answer["payload"]["data"]["syncMetrics"]["totalUsers"] == 0
        assert await receive(ws) == {"id": "q", "type": "complete"}


async def test_aliases_fragments_and_directives_shape_live_results(
    server: Server, tenant: Tenant
) -> None:
    query = """subscription Figures($withTotal: Boolean!) {
      cards: syncMetricsUpdated { ...Cards total: totalUsers @include(if: $withTotal) }
    }
    fragment Cards on SyncMetrics { failedSyncs }"""
    async with raw_socket(server, tenant.viewer.token) as ws:
        await subscribe(ws, "with", query, withTotal=True)
        await subscribe(ws, "without", query, withTotal=False)
        answers = {m["id"]: m["payload"]["data"] for m in [await receive(ws), await receive(ws)]}
    assert answers == {
        "with": {"cards": {"failedSyncs": 0, "total": 0}},
        "without": {"cards": {"failedSyncs": 0}},
    }


async def test_shared_results_are_written_as_frames_encoded_once(
    server: Server, tenant: Tenant
) -> None:
    """A result many dashboards share is serialized once, JSON and WebSocket frame, and each
    socket writes those bytes (app/web/ws_protocol.py's frame writer, subscriptions/
    shared.py). Fails if the server runs a WebSocket implementation without the writer: the
    results would then go the per-socket way, and the count would not move."""
    _, ids = await add_users(tenant, 3, prefix="frames")
    worker = Worker(tenant)
    async with AsyncExitStack() as stack:
        sockets = []
        for op_id in ("u", "page-1", "u"):  # ids as clients choose them; two share one
            ws = await stack.enter_async_context(raw_socket(server, tenant.viewer.token))
            await subscribe(ws, op_id, USER_UPDATES, ids=ids)
            await subscribe(ws, "m", METRICS_UPDATES)
            assert (await receive(ws))["id"] == "m"
            sockets.append((ws, op_id))
        before = health(server)["subscriptions"]["shared_frames_sent"]
        run_id = await worker.start(ids[1])
        received = []
        for ws, op_id in sockets:
            message = await receive(ws)
            while message["id"] == "m":  # the metrics of the change may come first
                message = await receive(ws)
            assert message["type"] == "next" and message["id"] == op_id
            received.append(message["payload"])
        user = received[0]["data"]["syncUserUpdated"]
        assert user["id"] == ids[1] and user["status"] == "IN_PROGRESS"
        assert user["currentRun"]["id"] == run_id
        assert received[1] == received[0] == received[2]
        await eventually(
            lambda: health(server)["subscriptions"]["shared_frames_sent"] >= before + 3
        )
