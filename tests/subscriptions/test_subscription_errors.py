"""Bad subscriptions fail as GraphQL errors with a contract code; a connection without a valid
token is closed (4401 none, 4403 bad)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from gql.transport.exceptions import TransportQueryError

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.support import (
    USER_UPDATES,
    Stream,
    add_users,
    close_code,
    raw_socket,
    receive,
    send,
    subscribe,
)


async def _subscribe_error(tenant: Tenant, **variables: object) -> dict[str, Any]:
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, **variables) as stream,
    ):
        with pytest.raises(TransportQueryError) as raised:
            await stream.next()
    errors = raised.value.errors or []
    assert len(errors) == 1, errors
    return dict(errors[0])


@pytest.mark.parametrize(
    "ids",
    [["not-an-id"], ["UG9saWN5OjE"], [""]],  # garbage, a Policy id, empty
    ids=["garbage", "wrong-type", "empty"],
)
async def test_bad_user_ids_are_bad_user_input(tenant: Tenant, ids: list[str]) -> None:
    error = await _subscribe_error(tenant, ids=ids)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["path"] == ["syncUserUpdated"]


async def test_more_than_100_user_ids_are_bad_user_input(tenant: Tenant) -> None:
    _, ids = await add_users(tenant, 101)
    error = await _subscribe_error(tenant, ids=ids)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "100" in error["message"]


async def test_exactly_100_user_ids_are_fine(tenant: Tenant) -> None:
    _, ids = await add_users(tenant, 100)
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, ids=ids) as stream,
    ):
        assert await stream.quiet(0.5) == []


async def test_invalid_document_is_a_graphql_error(server: Server, tenant: Tenant) -> None:
    async with raw_socket(server, tenant.viewer.token) as ws:
        await subscribe(ws, "1", "subscription { syncUserUpdated { nope } }")
        message = await receive(ws)
    assert message["type"] == "error" and message["id"] == "1"
    assert message["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_subscription_over_http_is_refused(server: Server, tenant: Tenant) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            server.graphql_url,
            json={"query": "subscription { syncMetricsUpdated { totalUsers } }"},
            headers={"Authorization": f"Bearer {tenant.viewer.token}"},
        )
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_no_token_closes_with_4401(server: Server) -> None:
    async with raw_socket(server, init=False) as ws:
        await send(ws, {"type": "connection_init", "payload": {}})
        assert await close_code(ws) == 4401
    async with raw_socket(server, init=False) as ws:
        await send(ws, {"type": "connection_init"})
        assert await close_code(ws) == 4401
    async with raw_socket(server, init=False) as ws:
        await send(ws, {"type": "connection_init", "payload": {"authorization": "Basic abc"}})
        assert await close_code(ws) in (4401, 4403)


async def test_bad_token_closes_with_4403(server: Server) -> None:
    async with raw_socket(server, init=False) as ws:
        await send(ws, {"type": "connection_init", "payload": {"authorization": "Bearer sst_nope"}})
        assert await close_code(ws) == 4403


async def test_subscribe_before_connection_init_closes_with_4401(server: Server) -> None:
    async with raw_socket(server, init=False) as ws:
        await subscribe(ws, "1", "subscription { syncMetricsUpdated { totalUsers } }")
        assert await close_code(ws) == 4401


async def test_gql_client_without_token_is_refused(server: Server) -> None:
    from tests.api import Api

    api = Api(server.graphql_url, server.ws_url, None)
    with pytest.raises(Exception) as raised:
        async with api.websocket() as session, Stream(session, USER_UPDATES) as stream:
            await stream.next()
    codes = []
    error: BaseException | None = raised.value
    while error is not None:
        codes.append(getattr(getattr(error, "rcvd", None), "code", None))
        error = error.__cause__ or error.__context__
    assert 4401 in codes, raised.value
