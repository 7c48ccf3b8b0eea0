"""Document limits on a real server: cost (QUERY_TOO_COMPLEX before anything runs), aliases,
directives, document size, request body (413 while reading), over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant
from tests.subscriptions.support import raw_socket, receive, send, subscribe

EXPENSIVE = (
    "{ "
    + " ".join(
        f"a{i}: syncUsers(first: 100) {{ edges {{ node {{ id email }} }} }}" for i in range(150)
    )
    + " }"
)
NESTED_RUNS = """{ syncUsers(first: 100) { edges { node { id
  runs(first: 100) { edges { node { id } } } } } } }"""
EXPENSIVE_SUBSCRIPTION = """subscription { syncUserUpdated { id
  runs(first: 100) { edges { node { failedItems(first: 100) { totalCount } } } } } }"""
TRIVIAL = {"query": "{ syncMetrics { totalUsers } }"}


async def post(tenant: ApiTenant, body: Any, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            tenant.server.graphql_url,
            json=body,
            headers={"Authorization": f"Bearer {tenant.viewer.token}", **headers},
        )


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


async def test_an_expensive_query_is_refused_with_its_cost_and_the_limit(
    tenant: ApiTenant,
) -> None:
    for query, cost in ((EXPENSIVE, 15_000), (NESTED_RUNS, 10_100)):
        response = await post(tenant, {"query": query})
        assert response.status_code == 200  # application/json: the spec allows 200
        body = response.json()
        assert body["data"] is None
        assert body["errors"][0]["extensions"] == {
            "code": "QUERY_TOO_COMPLEX",
            "cost": cost,
            "limit": 5000,
        }


async def test_nothing_runs_when_a_mutation_is_too_complex(tenant: ApiTenant) -> None:
    policy = await h.create_policy(tenant.admin, "p")
    (user,) = await h.add_users(tenant.admin, ["u@m365.example"], policy["id"])
    before = await h.user(tenant.viewer, user["id"])
    query = """mutation($u: ID!) { requestSync(userId: $u) { id
      runs(first: 100) { edges { node { failedItems(first: 100) { totalCount } } } } } }"""
    errors = await tenant.operator.errors(query, u=user["id"])
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert errors[0]["extensions"]["cost"] == 1 + 100 + 100 * 100
    after = await h.user(tenant.viewer, user["id"])
    assert after["version"] == before["version"] and after["status"] == "NEVER_SYNCED"


async def test_the_page_s_largest_queries_are_admitted(tenant: ApiTenant) -> None:
    failures = """query($id: ID!, $first: Int!) { syncUser(id: $id) { id
      runs(first: $first) { edges { node { id failedItems(first: 25) { totalCount } } } } } }"""
    data = await tenant.viewer.execute(failures, id="U3luY1VzZXI6MQ", first=100)
    assert data == {"syncUser": None}
    data = await tenant.viewer.execute(
        "query($n: Int) { syncUsers(first: $n) { totalCount } }", n=100
    )
    assert data["syncUsers"]["totalCount"] == 0


async def test_aliases_directives_and_document_size_are_bounded(tenant: ApiTenant) -> None:
    aliases = " ".join(f"a{i}: __typename" for i in range(101))
    response = await post(tenant, {"query": f"{{ {aliases} }}"})
    assert response.json()["errors"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": 100}
    directives = " ".join(["@include(if: true)"] * 5)
    response = await post(tenant, {"query": f"{{ __typename {directives} }}"})
    assert response.json()["errors"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": 4}
    big = "{ __typename " + "#" * 40_000 + "\n}"  # a comment: few tokens, many bytes
    response = await post(tenant, {"query": big})
    assert response.json()["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": 32 * 1024,
    }


async def test_request_errors_are_4xx_without_data_for_graphql_response_json(
    tenant: ApiTenant,
) -> None:
    accept = "application/graphql-response+json"
    for query in ("{ syncMetrics { nope } }", "{ syncMetrics {", EXPENSIVE):
        response = await post(tenant, {"query": query}, Accept=accept)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith(accept)
        assert "data" not in response.json()
        plain = await post(tenant, {"query": query}, Accept="application/json")
        assert plain.status_code == 200
        assert plain.headers["content-type"].startswith("application/json")
        assert plain.json()["data"] is None
    ok = await post(tenant, TRIVIAL, Accept=accept)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith(accept)
    assert ok.json() == {"data": {"syncMetrics": {"totalUsers": 0}}}


@pytest.mark.parametrize("header", [None, "Bearer sst_unknown", "Basic abc", "Bearer", "x"])
async def test_auth_failures_are_401_with_www_authenticate(
    tenant: ApiTenant, header: str | None
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            tenant.server.graphql_url,
            json=TRIVIAL,
            headers={"Authorization": header} if header else {},
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["data"] is None
    assert codes(response) == ["UNAUTHENTICATED"]


@pytest.fixture
async def watcher(tenant: ApiTenant) -> AsyncIterator[list[float]]:
    """Latencies of a trivial query sent every 50 ms while the test runs."""
    latencies: list[float] = []

    async def watch() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                started = time.perf_counter()
                response = await client.post(
                    tenant.server.graphql_url,
                    json=TRIVIAL,
                    headers={"Authorization": f"Bearer {tenant.viewer.token}"},
                )
                assert response.status_code == 200
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

    task = asyncio.create_task(watch())
    try:
        yield latencies
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_large_body_is_413_while_reading_and_the_server_stays_responsive(
    tenant: ApiTenant, watcher: list[float]
) -> None:
    url = tenant.server.graphql_url
    json_type = {"content-type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        yield b'{"query": "'
        for _ in range(100):
            yield b"x" * (1024 * 1024)

    async with httpx.AsyncClient(timeout=30) as client:
        declared = await client.post(
            url, content=b"{" + b" " * (5 * 1024 * 1024) + b"}", headers=json_type
        )
        assert declared.status_code == 413
        assert declared.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        try:
            streamed = await client.post(url, content=chunks(), headers=json_type)
            assert streamed.status_code == 413
        except httpx.TransportError:
            pass  # past 8 MB the server answers and closes while the client still sends
        just_under = b'{"query": "{ __typename }", "x": "' + b"y" * (1024 * 1024 - 64) + b'"}'
        assert len(just_under) <= 1024 * 1024
        ok = await client.post(url, content=just_under, headers=json_type)
        assert ok.status_code == 200 and ok.json() == {"data": {"__typename": "Query"}}
    await asyncio.sleep(0.3)
    assert watcher and max(watcher) < 1.0, watcher


async def test_the_limits_hold_over_websocket(tenant: ApiTenant) -> None:
    async with raw_socket(tenant.server, tenant.viewer.token) as ws:
        await send(ws, {"id": "q", "type": "subscribe", "payload": {"query": EXPENSIVE}})
        message = await receive(ws)
        assert message["type"] == "error" and message["id"] == "q"
        assert message["payload"][0]["extensions"] == {
            "code": "QUERY_TOO_COMPLEX",
            "cost": 15_000,
            "limit": 5000,
        }
        await subscribe(ws, "s", EXPENSIVE_SUBSCRIPTION)
        message = await receive(ws)
        assert message["type"] == "error" and message["id"] == "s"
        assert message["payload"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        aliases = " ".join(f"a{i}: id" for i in range(101))
        await subscribe(ws, "a", f"subscription {{ syncUserUpdated {{ {aliases} }} }}")
        message = await receive(ws)
        assert message["type"] == "error" and message["id"] == "a"
        assert message["payload"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": 100}
        # The socket stays usable.
        await send(ws, {"id": "ok", "type": "subscribe", "payload": TRIVIAL})
        message = await receive(ws)
        assert message == {
            "id": "ok",
            "type": "next",
            "payload": {"data": {"syncMetrics": {"totalUsers": 0}}},
        }


async def test_revoked_and_expired_tokens_are_401_too(tenant: ApiTenant) -> None:
    create = """mutation($name: String!, $at: DateTime) {
      createApiToken(name: $name, role: VIEWER, expiresAt: $at) { id token } }"""
    revoked = (await tenant.admin.execute(create, name="gone"))["createApiToken"]
    await tenant.admin.execute(
        "mutation($id: ID!) { revokeApiToken(id: $id) { id } }", id=revoked["id"]
    )
    soon = datetime.now(UTC) + timedelta(seconds=1)
    expired = (await tenant.admin.execute(create, name="old", at=soon.isoformat()))[
        "createApiToken"
    ]
    await asyncio.sleep(1.5)
    async with httpx.AsyncClient(timeout=30) as client:
        for token in (revoked["token"], expired["token"]):
            response = await client.post(
                tenant.server.graphql_url,
                json=TRIVIAL,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
            assert codes(response) == ["UNAUTHENTICATED"]
