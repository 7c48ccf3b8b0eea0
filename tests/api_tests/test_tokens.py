"""The token lifecycle through the API: expiry, revocation (requests and open WebSockets),
apiTokens paging, lastUsedAt, viewer, and who may see and revoke which token."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api import Api
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant
from tests.server import Server
from tests.subscriptions.support import close_code, raw_socket, receive, subscribe

INFO_FIELDS = "id name role createdAt expiresAt lastUsedAt revokedAt"
CREATE = """mutation($name: String!, $role: Role!, $expiresAt: DateTime) {
  createApiToken(name: $name, role: $role, expiresAt: $expiresAt) {
    id token role name expiresAt } }"""
REVOKE = f"mutation($id: ID!) {{ revokeApiToken(id: $id) {{ {INFO_FIELDS} }} }}"
TOKENS = f"""query($first: Int, $after: String, $last: Int, $before: String) {{
  apiTokens(first: $first, after: $after, last: $last, before: $before) {{
    totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ cursor node {{ {INFO_FIELDS} }} }} }} }}"""
NODE = f"""query($id: ID!) {{ node(id: $id) {{ __typename id
  ... on ApiTokenInfo {{ {INFO_FIELDS} }} }} }}"""
VIEWER = "{ viewer { tenantName tokenName role } }"
METRICS_UPDATES = "subscription { syncMetricsUpdated { totalUsers } }"


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def raw_id(type_name: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{row_id}".encode()).decode().rstrip("=")


async def create(admin: Api, name: str, role: str = "VIEWER", **variables: Any) -> dict[str, Any]:
    created = (await admin.execute(CREATE, name=name, role=role, **variables))["createApiToken"]
    assert created["token"].startswith("sst_")
    return dict(created)


def caller(admin: Api, token: str) -> Api:
    return Api(admin.graphql_url, admin.ws_url, token)


async def refusal(server: Server, token: str) -> dict[str, Any]:
    """What a request with this token gets back (status and body), when it is refused."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            server.graphql_url,
            json={"query": "{ syncMetrics { totalUsers } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    assert body["errors"][0]["message"] == "Invalid API token."
    return {"status": response.status_code, "body": body}


async def all_tokens(admin: Api) -> list[dict[str, Any]]:
    found = (await admin.execute(TOKENS, first=100))["apiTokens"]
    return [e["node"] for e in found["edges"]]


async def test_an_expired_token_is_refused_like_an_unknown_one(
    server: Server, tenant: ApiTenant
) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=5)  # the checks before it fit in that
    created = await create(tenant.admin, "short", expiresAt=iso(expires))
    assert when(created["expiresAt"]) == expires
    short = caller(tenant.admin, created["token"])
    async with raw_socket(server, created["token"]) as ws:
        await subscribe(ws, "1", METRICS_UPDATES)
        assert (await receive(ws))["type"] == "next"
        assert (await h.metrics(short))["totalUsers"] == 0  # works, and is cached now
        listed = {t["id"]: t for t in await all_tokens(tenant.admin)}
        assert listed[created["id"]]["expiresAt"] == created["expiresAt"]
        # Its WebSocket closes when it expires.
        assert await close_code(ws, within=10) == 4403
    assert datetime.now(UTC) >= expires
    assert await refusal(server, created["token"]) == await refusal(server, "sst_" + "x" * 43)


@pytest.mark.parametrize(
    "expires_at",
    [
        iso(datetime.now(UTC) - timedelta(seconds=1)),
        iso(datetime.now(UTC) + timedelta(days=3651)),
        "9999-12-31T23:59:59Z",
        "tomorrow",
    ],
    ids=["past", "over-ten-years", "year-9999", "garbage"],
)
async def test_an_expiry_in_the_past_or_absurd_is_bad_user_input(
    tenant: ApiTenant, expires_at: str
) -> None:
    code = await tenant.admin.error_code(CREATE, name="x", role="VIEWER", expiresAt=expires_at)
    assert code == "BAD_USER_INPUT"
    assert len(await all_tokens(tenant.admin)) == 1  # only the admin's own


async def test_a_revoked_token_is_refused_at_once_and_its_sockets_close(
    server: Server, tenant: ApiTenant
) -> None:
    created = await create(tenant.admin, "to revoke")
    doomed = caller(tenant.admin, created["token"])
    kept = await create(tenant.admin, "kept")
    async with (
        raw_socket(server, created["token"]) as ws,
        raw_socket(server, kept["token"]) as other_ws,
    ):
        await subscribe(ws, "1", METRICS_UPDATES)
        await subscribe(other_ws, "1", METRICS_UPDATES)
        assert (await receive(ws))["type"] == "next"
        assert (await receive(other_ws))["type"] == "next"
        assert (await h.metrics(doomed))["totalUsers"] == 0  # in the cache now
        revoked = (await tenant.admin.execute(REVOKE, id=created["id"]))["revokeApiToken"]
        refused = await refusal(server, created["token"])
        assert await close_code(ws, within=2) == 4403
        # The other token's socket stays open and served.
        await h.add_users(tenant.admin, ["after@revoke.example"])
        assert (await receive(other_ws))["payload"]["data"]["syncMetricsUpdated"] == {
            "totalUsers": 1
        }
    assert refused == await refusal(server, "sst_" + "y" * 43)
    assert revoked["id"] == created["id"] and revoked["name"] == "to revoke"
    assert revoked["revokedAt"] is not None
    # Revoking again changes nothing (lastUsedAt may have caught up with the use before).
    again = (await tenant.admin.execute(REVOKE, id=created["id"]))["revokeApiToken"]
    assert {**again, "lastUsedAt": None} == {**revoked, "lastUsedAt": None}
    node = (await tenant.admin.execute(NODE, id=created["id"]))["node"]
    # lastUsedAt again may catch up meanwhile: uses are recorded in batches (app/auth/usage.py).
    assert {**node, "lastUsedAt": None} == {
        "__typename": "ApiTokenInfo",
        **again,
        "lastUsedAt": None,
    }
    # A new socket with it is refused like an unknown token.
    async with raw_socket(server, init=False) as ws:
        await ws.send(
            '{"type":"connection_init","payload":{"authorization":"Bearer '
            + created["token"]
            + '"}}'
        )
        assert await close_code(ws) == 4403
    assert (await h.metrics(caller(tenant.admin, kept["token"])))["totalUsers"] == 1


async def test_api_tokens_pages_newest_first_with_an_exact_total(tenant: ApiTenant) -> None:
    aliases = " ".join(
        f't{i}: createApiToken(name: "n{i}", role: {("VIEWER", "WORKER")[i % 2]}) {{ id token }}'
        for i in range(12)
    )
    created = await tenant.admin.execute(f"mutation {{ {aliases} }}")
    secrets = [created[f"t{i}"]["token"] for i in range(12)]
    everything = await all_tokens(tenant.admin)
    assert [t["name"] for t in everything] == [f"n{i}" for i in reversed(range(12))] + ["tests"]
    newest_first = [created[f"t{i}"]["id"] for i in reversed(range(12))]
    assert [t["id"] for t in everything[:12]] == newest_first
    assert everything[0]["role"] == "WORKER" and everything[1]["role"] == "VIEWER"
    assert all(t["revokedAt"] is None and t["expiresAt"] is None for t in everything)

    forward: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await tenant.admin.execute(TOKENS, first=5, after=after))["apiTokens"]
        assert page["totalCount"] == 13
        forward += [e["node"] for e in page["edges"]]
        assert page["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    ids = [t["id"] for t in everything]  # (the admin's lastUsedAt may move meanwhile)
    assert [t["id"] for t in forward] == ids
    backward: list[dict[str, Any]] = []
    before = None
    while True:
        page = (await tenant.admin.execute(TOKENS, last=4, before=before))["apiTokens"]
        backward = [e["node"] for e in page["edges"]] + backward
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert [t["id"] for t in backward] == ids
    # Revoked tokens stay listed, with revokedAt.
    await tenant.admin.execute(REVOKE, id=everything[3]["id"])
    page = (await tenant.admin.execute(TOKENS, first=100))["apiTokens"]
    assert page["totalCount"] == 13
    assert [e["node"]["revokedAt"] is not None for e in page["edges"]].count(True) == 1
    # Never the secret: not in any listing, and not a field of ApiTokenInfo.
    async with httpx.AsyncClient(timeout=30) as client:
        raw = await client.post(
            tenant.admin.graphql_url,
            json={"query": TOKENS, "variables": {"first": 100}},
            headers={"Authorization": f"Bearer {tenant.admin.token}"},
        )
    assert "sst_" not in raw.text and not any(s[4:] in raw.text for s in secrets)
    assert await tenant.admin.errors("{ apiTokens { edges { node { token } } } }")
    for bad in ({"first": 0}, {"first": 101}, {"after": "nope"}, {"first": 1, "last": 1}):
        assert await tenant.admin.error_code(TOKENS, **bad) == "BAD_USER_INPUT"


async def test_last_used_at_is_set_after_use_at_most_once_a_minute(tenant: ApiTenant) -> None:
    created = await create(tenant.admin, "used")
    assert created["id"] in {t["id"] for t in await all_tokens(tenant.admin)}
    (info,) = [t for t in await all_tokens(tenant.admin) if t["id"] == created["id"]]
    assert info["lastUsedAt"] is None
    used = caller(tenant.admin, created["token"])
    before = datetime.now(UTC)
    await h.metrics(used)
    after = datetime.now(UTC)

    async def last_used() -> str | None:
        found = (await tenant.admin.execute(NODE, id=created["id"]))["node"]
        return str(found["lastUsedAt"]) if found["lastUsedAt"] else None

    deadline = time.monotonic() + 15
    first = await last_used()
    while first is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        first = await last_used()
    assert first is not None, "lastUsedAt was never set"
    assert before - timedelta(milliseconds=5) <= when(first) <= after + timedelta(milliseconds=5)
    # Used again within the minute: not written again.
    await h.metrics(used)
    await asyncio.sleep(2.5)
    assert await last_used() == first


async def test_viewer_tells_each_token_its_tenant_name_and_role(tenant: ApiTenant) -> None:
    for role in ("viewer", "operator", "worker", "admin"):
        found = (await tenant.api(role).execute(VIEWER))["viewer"]
        name = "tests" if role == "admin" else role
        assert found == {"tenantName": tenant.name, "tokenName": name, "role": role.upper()}


@pytest.mark.parametrize("role", ["viewer", "operator", "worker"])
async def test_only_admins_list_see_and_revoke_tokens(tenant: ApiTenant, role: str) -> None:
    someone = tenant.api(role)
    target = await create(tenant.admin, "target")
    assert await someone.error_code(TOKENS) == "FORBIDDEN"
    assert await someone.error_code(REVOKE, id=target["id"]) == "FORBIDDEN"
    assert (await someone.execute(NODE, id=target["id"]))["node"] is None
    (found,) = [t for t in await all_tokens(tenant.admin) if t["id"] == target["id"]]
    assert found["revokedAt"] is None
    assert (await h.metrics(caller(tenant.admin, target["token"])))["totalUsers"] == 0


async def test_another_tenants_token_does_not_exist(
    tenant: ApiTenant, other_tenant: ApiTenant
) -> None:
    mine = await create(tenant.admin, "mine")
    theirs = other_tenant.admin
    assert await theirs.error_code(REVOKE, id=mine["id"]) == "NOT_FOUND"
    assert (await theirs.execute(NODE, id=mine["id"]))["node"] is None
    assert mine["id"] not in {t["id"] for t in await all_tokens(theirs)}
    assert (await h.metrics(caller(tenant.admin, mine["token"])))["totalUsers"] == 0
    # Their cursors are not ours.
    cursor = (await theirs.execute(TOKENS, first=1))["apiTokens"]["pageInfo"]["endCursor"]
    assert await tenant.admin.error_code(TOKENS, after=cursor) == "BAD_USER_INPUT"


async def test_revoking_a_bad_or_unknown_id(tenant: ApiTenant) -> None:
    (user,) = await h.add_users(tenant.admin, ["u@ids.example"])
    assert await tenant.admin.error_code(REVOKE, id=user["id"]) == "BAD_USER_INPUT"
    assert await tenant.admin.error_code(REVOKE, id="garbage") == "BAD_USER_INPUT"
    unknown = raw_id("ApiTokenInfo", 2**31 - 1)
    assert await tenant.admin.error_code(REVOKE, id=unknown) == "NOT_FOUND"
    assert (await tenant.admin.execute(NODE, id=unknown))["node"] is None


AUDIT = """query($action: String) { auditEvents(filter: {action: $action}, first: 10) {
  edges { node { action actor actorRole targetId summary } } } }"""


async def test_a_revocation_is_audited_once(tenant: ApiTenant) -> None:
    created = await create(tenant.admin, "audited")
    for _ in range(2):  # the second revocation changes nothing, so records nothing
        await tenant.admin.execute(REVOKE, id=created["id"])
    found = (await tenant.admin.execute(AUDIT, action="token.revoke"))["auditEvents"]["edges"]
    assert [e["node"] for e in found] == [
        {
            "action": "token.revoke",
            "actor": "tests",
            "actorRole": "ADMIN",
            "targetId": created["id"],
            "summary": "Token 'audited' with role VIEWER revoked",
        }
    ]
