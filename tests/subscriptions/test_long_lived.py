"""A long-lived subscription does not grow with the events it receives.

graphql-core 3.3.2 kept a memo entry per delivered event in the subscription's executor
(~1-2 KB an event, for as long as the subscription lived); schema/shared_executor.py gives
each event its own. Twenty subscribers with distinct documents (so none shares another's
execution) receive 400 updates each: with the growth that was ~10 MB.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from websockets.asyncio.client import ClientConnection

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.support import (
    REQUEST_SYNC,
    add_users,
    health,
    raw_socket,
    receive,
    subscribe,
)

SUBSCRIBERS = 20
UPDATES = 400
MAX_GROWTH_KB = 4 * 1024


def _document(n: int) -> str:
    return f"""subscription S{n}($ids: [ID!]) {{ syncUserUpdated(userIds: $ids) {{
      id version status email destinationEmail latestSyncAt unresolvedFailureCount
      policy {{ id name active }} alias{n}: email }} }}"""


async def _receive_until(ws: ClientConnection, version: int) -> None:
    while (await receive(ws))["payload"]["data"]["syncUserUpdated"]["version"] < version:
        pass


async def test_memory_does_not_grow_with_events_delivered(server: Server, tenant: Tenant) -> None:
    _, (user_id,) = await add_users(tenant, 1)
    operator = tenant.operator

    async def update() -> int:
        return int((await operator.execute(REQUEST_SYNC, u=user_id))["requestSync"]["version"])

    async with asyncio.timeout(120), AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(raw_socket(server, tenant.viewer.token))
            for _ in range(SUBSCRIBERS)
        ]
        for n, ws in enumerate(sockets):
            await subscribe(ws, "u", _document(n), ids=[user_id])
        # A subscribe is not acknowledged: updates until one reached every socket (each one
        # that got an earlier update still waits for this one), not a fixed pause.
        while True:
            version = await update()
            try:
                async with asyncio.timeout(0.5):
                    await asyncio.gather(*(_receive_until(ws, version) for ws in sockets))
                break
            except TimeoutError:
                continue
        before = health(server)["process"]["rss_kb"]
        for _ in range(UPDATES):
            version = await update()
            await asyncio.gather(*(_receive_until(ws, version) for ws in sockets))
        growth = health(server)["process"]["rss_kb"] - before
    assert growth < MAX_GROWTH_KB, f"RSS grew {growth} KB over {SUBSCRIBERS * UPDATES} events"
