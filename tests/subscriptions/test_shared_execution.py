"""An event is executed once for all subscribers with the same document (and the same
variables below the subscription field), and never shared where the result could differ."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.support import (
    REQUEST_SYNC,
    Worker,
    add_users,
    health,
    raw_socket,
    receive,
    subscribe,
)

RUNS = """subscription Runs($ids: [ID!], $n: Int) { syncUserUpdated(userIds: $ids) {
  id version runs(first: $n) { totalCount edges { node { id } } } } }"""
SAME = "subscription Same { syncUserUpdated { id version status email } }"


def _user(message: dict[str, Any]) -> dict[str, Any]:
    return message["payload"]["data"]["syncUserUpdated"]


async def test_results_differ_where_variables_below_the_field_differ(
    server: Server, tenant: Tenant
) -> None:
    _, (user_id,) = await add_users(tenant, 1)
    worker = Worker(tenant)
    for _ in range(3):
        await worker.run(user_id, progress_reports=0)
    async with AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(raw_socket(server, tenant.viewer.token))
            for _ in range(3)
        ]
        for n, ws in enumerate(sockets, start=1):
            await subscribe(ws, "r", RUNS, ids=[user_id], n=n)
        await asyncio.sleep(0.5)
        await tenant.operator.execute(REQUEST_SYNC, u=user_id)
        results = [_user(await receive(ws)) for ws in sockets]
    assert [len(r["runs"]["edges"]) for r in results] == [1, 2, 3]
    assert {r["runs"]["totalCount"] for r in results} == {3}


async def test_one_execution_serves_every_subscriber_of_a_document(
    server: Server, tenant: Tenant
) -> None:
    _, (user_id,) = await add_users(tenant, 1)
    async with AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(raw_socket(server, tenant.viewer.token))
            for _ in range(10)
        ]
        for ws in sockets:
            await subscribe(ws, "s", SAME)
        await asyncio.sleep(0.5)
        before = health(server)["subscriptions"]
        await tenant.operator.execute(REQUEST_SYNC, u=user_id)
        results = [_user(await receive(ws)) for ws in sockets]
        after = health(server)["subscriptions"]
    assert all(r == results[0] for r in results)
    assert after["shared_executions_run"] - before["shared_executions_run"] == 1
    assert after["shared_executions_reused"] - before["shared_executions_reused"] == 9
