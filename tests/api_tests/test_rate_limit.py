"""The budget of cost points per token and minute, on real servers: HTTP 429 with Retry-After
and RATE_LIMITED, an error for that operation over WebSocket (the socket stays open), and one
budget for several processes on Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server import Server, create_token, postgres_database, run_server, sqlite_database
from tests.services import postgres_admin_url, redis_url
from tests.subscriptions.support import raw_socket, receive, send

LIMIT = 300
PAGE = {"query": "{ syncUsers(first: 100) { totalCount } }"}  # costs 100


def _fresh_window() -> None:
    """Starts the test early in a minute, so that its spending stays in one window: 20 s for
    a few requests, beside the other tests on a loaded machine (not in the serial phase)."""
    into = time.time() % 60
    if into > 40:
        time.sleep(60 - into + 0.1)


def post(server: Server, token: str) -> httpx.Response:
    return httpx.post(
        server.graphql_url, json=PAGE, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry = int(response.headers["retry-after"])
    assert 1 <= retry <= 60
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfterSeconds": retry}


@pytest.fixture(scope="module")
def limited() -> Iterator[Server]:
    with sqlite_database() as url, run_server(url, {"SYNCSTATUS_RATE_LIMIT": str(LIMIT)}) as s:
        yield s


def test_over_the_budget_is_429_for_that_token_only(limited: Server) -> None:
    token = create_token(limited.database_url, "Rate", "viewer")
    other = create_token(limited.database_url, "Rate", "viewer")
    _fresh_window()
    for _ in range(LIMIT // 100):
        response = post(limited, token)
        assert response.status_code == 200, response.text
        assert response.json() == {"data": {"syncUsers": {"totalCount": 0}}}
    assert_rate_limited(post(limited, token))
    assert post(limited, other).status_code == 200  # another token has its own budget


def test_callers_without_a_token_share_one_budget_per_address(limited: Server) -> None:
    """Without a token only the schema's description can be read, but it costs CPU: such
    callers spend from their address's budget (a `__type` costs 10) like a token does."""
    token = create_token(limited.database_url, "Rate", "viewer")
    describe = {"query": '{ __type(name: "SyncUser") { name } }'}
    _fresh_window()
    for bearer in (None, "sst_not-a-token"):  # no token, or one that is not valid: one budget
        for _ in range(LIMIT // 20):
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            response = httpx.post(limited.graphql_url, json=describe, headers=headers, timeout=30)
            assert response.json() == {"data": {"__type": {"name": "SyncUser"}}}
    assert_rate_limited(httpx.post(limited.graphql_url, json=describe, timeout=30))
    assert post(limited, token).status_code == 200  # a token's budget is its own


def test_a_csv_export_spends_from_the_same_budget(limited: Server) -> None:
    """An export costs a page of the largest size (100): a token over its budget exports
    nothing either."""
    token = create_token(limited.database_url, "Rate", "viewer")
    url, headers = f"{limited.url}/export/sync-users.csv", {"Authorization": f"Bearer {token}"}
    _fresh_window()
    for _ in range(LIMIT // 100):
        assert httpx.get(url, headers=headers, timeout=30).status_code == 200
    assert_rate_limited(httpx.get(url, headers=headers, timeout=30))
    assert_rate_limited(post(limited, token))


async def test_over_websocket_the_operation_fails_and_the_socket_stays_open(
    limited: Server,
) -> None:
    token = create_token(limited.database_url, "RateWs", "viewer")
    await asyncio.to_thread(_fresh_window)
    async with raw_socket(limited, token) as ws:
        for i in range(LIMIT // 100):
            await send(ws, {"id": f"q{i}", "type": "subscribe", "payload": PAGE})
            message = await receive(ws)
            assert message["type"] == "next", message
            assert (await receive(ws))["type"] == "complete"
        await send(ws, {"id": "over", "type": "subscribe", "payload": PAGE})
        message = await receive(ws)
        assert message["id"] == "over" and message["type"] in ("error", "next"), message
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "RATE_LIMITED"
        subscription = {"query": "subscription { syncMetricsUpdated { totalUsers } }"}
        await send(ws, {"id": "live", "type": "subscribe", "payload": subscription})
        message = await receive(ws)
        # A subscription refused before it starts is an `error` message (graphql-transport-ws),
        # with the code and the wait, as HTTP's 429.
        assert message["id"] == "live" and message["type"] == "error", message
        assert message["payload"][0]["extensions"]["code"] == "RATE_LIMITED", message
        assert message["payload"][0]["extensions"]["retryAfterSeconds"] >= 1, message
        await send(ws, {"type": "ping"})
        while (message := await receive(ws, pings=True))["type"] != "pong":  # still open
            assert message["type"] == "complete", message


def test_a_zero_limit_turns_it_off() -> None:
    with sqlite_database() as url, run_server(url, {"SYNCSTATUS_RATE_LIMIT": "0"}) as server:
        token = create_token(url, "Off", "viewer")
        for _ in range(2 * LIMIT // 100):
            assert post(server, token).status_code == 200


def test_processes_on_redis_share_one_budget() -> None:
    broker = redis_url()
    with postgres_database(postgres_admin_url()) as url:
        env = {"SYNCSTATUS_RATE_LIMIT": str(LIMIT), "SYNCSTATUS_BROADCAST_URL": broker}
        with run_server(url, env) as first, run_server(url, env) as second:
            token = create_token(url, "Shared", "viewer")
            _fresh_window()
            assert post(first, token).status_code == 200
            assert post(second, token).status_code == 200
            assert post(first, token).status_code == 200
            assert_rate_limited(post(second, token))
            assert_rate_limited(post(first, token))
