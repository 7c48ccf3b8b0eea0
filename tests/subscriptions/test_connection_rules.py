"""Connection rules of /graphql over WebSocket: graphql-transport-ws only, connection_init within
5 s (4408), a bounded number of subscriptions and bounded message size, server pings."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.support import (
    METRICS_UPDATES,
    close_code,
    raw_socket,
    receive,
    send,
    subscribe,
)

MAX_SUBSCRIPTIONS = 20


async def test_connection_without_init_is_closed_with_4408(server: Server) -> None:
    started = time.monotonic()
    async with raw_socket(server, init=False) as ws:
        assert await close_code(ws, within=10) == 4408
    assert 4.0 <= time.monotonic() - started <= 8.0


@pytest.mark.parametrize("subprotocol", ["graphql-ws", None], ids=["legacy", "none"])
async def test_only_graphql_transport_ws_is_spoken(server: Server, subprotocol: str | None) -> None:
    offered = [subprotocol] if subprotocol else None
    async with websockets.connect(server.ws_url, subprotocols=offered, open_timeout=10) as ws:
        assert ws.subprotocol is None
        assert await close_code(ws) == 4406  # subprotocol not acceptable


async def test_a_socket_holds_a_bounded_number_of_subscriptions(
    server: Server, tenant: Tenant
) -> None:
    async with raw_socket(server, tenant.viewer.token) as ws:
        for n in range(MAX_SUBSCRIPTIONS):
            await subscribe(ws, str(n), METRICS_UPDATES)
        first = [await receive(ws) for _ in range(MAX_SUBSCRIPTIONS)]
        assert all(m["type"] == "next" for m in first)
        await subscribe(ws, "one-too-many", METRICS_UPDATES)
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["id"] == "one-too-many"
        assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        # Completing one frees a place.
        await send(ws, {"id": "0", "type": "complete"})
        await asyncio.sleep(0.2)
        await subscribe(ws, "replacement", METRICS_UPDATES)
        accepted = await receive(ws)
        assert accepted["type"] == "next" and accepted["id"] == "replacement"


async def test_a_message_over_64_kb_closes_the_connection(server: Server, tenant: Tenant) -> None:
    async with raw_socket(server, tenant.viewer.token) as ws:
        huge = "query { __typename " + " " * (70 * 1024) + "}"
        await subscribe(ws, "big", huge)
        assert await close_code(ws) == 1009  # message too big


async def test_a_message_under_the_limit_is_fine(server: Server, tenant: Tenant) -> None:
    async with raw_socket(server, tenant.viewer.token) as ws:
        padded = "subscription { syncMetricsUpdated { totalUsers } " + " " * (30 * 1024) + "}"
        await subscribe(ws, "padded", padded)
        assert (await receive(ws))["type"] == "next"


async def test_the_server_pings_idle_connections(server: Server, tenant: Tenant) -> None:
    async with raw_socket(server, tenant.viewer.token) as ws:
        await subscribe(ws, "m", METRICS_UPDATES)
        assert (await receive(ws))["type"] == "next"
        ping = await receive(ws, within=20, pings=True)  # PING_INTERVAL is 15 s
        assert ping == {"type": "ping"}
        await send(ws, {"type": "pong"})
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}
