"""Connection rules of /graphql over WebSocket: graphql-transport-ws only, connection_init within
SYNCSTATUS_WS_INIT_TIMEOUT_SECONDS (4408), a bounded number of subscriptions and bounded message
size, server pings every SYNCSTATUS_WS_PING_SECONDS. (Their defaults, 5 s and 15 s:
tests/unit/test_ws_settings.py.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import websockets

from tests.conftest import Tenant
from tests.server import Server, run_server, sqlite_database
from tests.subscriptions.support import (
    METRICS_UPDATES,
    close_code,
    raw_socket,
    receive,
    send,
    subscribe,
)

MAX_SUBSCRIPTIONS = 20
# The timing tests' server waits this long for connection_init and pings this often: what they
# wait for is the configured time, so it is short (the defaults would cost 5 s and 15 s).
INIT_TIMEOUT = 1.0
PING_SECONDS = 1.0


@pytest.fixture(scope="module")
def timed_server() -> Iterator[Server]:
    env = {
        "SYNCSTATUS_WS_INIT_TIMEOUT_SECONDS": str(INIT_TIMEOUT),
        "SYNCSTATUS_WS_PING_SECONDS": str(PING_SECONDS),
    }
    with sqlite_database() as url, run_server(url, env=env) as running:
        yield running


async def test_connection_without_init_is_closed_with_4408(timed_server: Server) -> None:
    started = time.monotonic()
    async with raw_socket(timed_server, init=False) as ws:
        assert await close_code(ws, within=INIT_TIMEOUT + 5) == 4408
    # Not before the timeout (the server's clock starts after ours), and well before the 5 s
    # default: the setting is what the server waited for.
    assert INIT_TIMEOUT <= time.monotonic() - started <= INIT_TIMEOUT + 3


@pytest.mark.parametrize("subprotocol", ["graphql-ws", None], ids=["legacy", "none"])
async def test_only_graphql_transport_ws_is_spoken(server: Server, subprotocol: str | None) -> None:
    offered = [websockets.Subprotocol(subprotocol)] if subprotocol else None
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


async def test_json_nested_too_deeply_is_a_bad_message(server: Server, tenant: Tenant) -> None:
    """Nesting Python's JSON decoder cannot follow (a RecursionError) closes with 4400, as
    any message that is not JSON does, before and after connection_init, and logs nothing."""
    nested = "[" * 3000 + "]" * 3000
    start = len(server.log())
    async with raw_socket(server, init=False) as ws:
        await ws.send('{"type": "connection_init", "payload": ' + nested + "}")
        assert await close_code(ws) == 4400
    async with raw_socket(server, tenant.viewer.token) as ws:
        await ws.send(
            '{"type": "subscribe", "id": "deep", "payload": {"query": "{ __typename }", '
            '"variables": {"a": ' + nested + "}}}"
        )
        assert await close_code(ws) == 4400
    assert "Traceback" not in server.log()[start:]


@pytest.mark.parametrize(
    ("message", "init"),
    [
        ("[1, 2]", False),
        ('"just a string"', False),
        ('{"type": 5}', False),
        ('{"type": "subscribe", "id": [1], "payload": {"query": "{ __typename }"}}', False),
        ('{"type": "complete", "id": {}}', False),
        ('{"type": "connection_init", "payload": {"n": ' + "9" * 4301 + "}}", False),
        ("[1, 2]", True),
        ('{"id": "1", "type": "subscribe", "payload": "x"}', True),
        ('{"id": "1", "type": "subscribe", "payload": {"query": 5}}', True),
        ('{"id": "", "type": "subscribe", "payload": {"query": "{ __typename }"}}', True),
        ('{"id": 7, "type": "complete"}', True),
    ],
)
async def test_a_malformed_message_closes_with_4400_and_logs_nothing(
    server: Server, tenant: Tenant, message: str, init: bool
) -> None:
    """graphql-transport-ws: a message that is not an object with a string type, or whose id or
    subscribe payload is malformed, closes with 4400 (these killed the handler with a
    traceback and dropped the socket without a close frame, some before the token)."""
    start = len(server.log())
    async with raw_socket(server, tenant.viewer.token if init else None, init=init) as ws:
        await ws.send(message)
        assert await close_code(ws) == 4400
    assert "Traceback" not in server.log()[start:]
    assert "Exception" not in server.log()[start:]


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "{ __typename }", "variables": [1]},
        {"query": "{ __typename }", "extensions": "x"},
        {"query": "{ __typename }", "operationName": 5},
    ],
    ids=["variables-list", "extensions-string", "operation-name-number"],
)
async def test_a_malformed_subscribe_payload_closes_with_4400(
    server: Server, tenant: Tenant, payload: dict[str, object]
) -> None:
    """What HTTP answers with 400 (tests/api_tests/test_garbage.py) is an invalid message
    here, as graphql-transport-ws says; it was executed."""
    async with raw_socket(server, tenant.viewer.token) as ws:
        await send(ws, {"id": "bad", "type": "subscribe", "payload": payload})
        assert await close_code(ws) == 4400


async def test_a_message_under_the_limit_is_fine(server: Server, tenant: Tenant) -> None:
    async with raw_socket(server, tenant.viewer.token) as ws:
        padded = "subscription { syncMetricsUpdated { totalUsers } " + " " * (30 * 1024) + "}"
        await subscribe(ws, "padded", padded)
        assert (await receive(ws))["type"] == "next"


async def test_the_server_pings_idle_connections(timed_server: Server) -> None:
    tenant = Tenant(timed_server, "pinged")
    async with raw_socket(timed_server, tenant.viewer.token) as ws:
        await subscribe(ws, "m", METRICS_UPDATES)
        assert (await receive(ws))["type"] == "next"
        # Pings counted over 3.5 intervals: 3, give or take one for a late start or a delayed
        # read (a count, unlike the gap between two arrivals, a delayed read cannot shrink).
        # None would mean the interval is not the setting; 5 or more, pings too often.
        window = 3.5 * PING_SECONDS
        pings: list[dict[str, object]] = []
        end = time.monotonic() + window
        while (left := end - time.monotonic()) > 0:
            try:
                pings.append(await receive(ws, within=left, pings=True))
            except TimeoutError:
                break
        assert all(ping == {"type": "ping"} for ping in pings), pings
        assert 2 <= len(pings) <= 4, f"{len(pings)} pings in {window} s"
        await send(ws, {"type": "pong"})
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}
