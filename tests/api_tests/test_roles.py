"""Roles: VIEWER queries, OPERATOR +requestSync, WORKER run reporting, ADMIN everything.
Anything beyond a role is FORBIDDEN and changes nothing; no or a bad token: UNAUTHENTICATED."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.api import Api
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant


@dataclass
class Ids:
    policy: str
    fresh: str  # never synced
    busy: str  # a run is running
    run: str  # that run
    done_run: str  # a finished run


async def _setup(tenant: ApiTenant) -> Ids:
    policy = await h.create_policy(tenant.admin, "Roles")
    fresh, busy, done = await h.add_users(
        tenant.admin, ["fresh@r.example", "busy@r.example", "done@r.example"], policy["id"]
    )
    runs = await h.drive(tenant.worker, [(busy["id"], "IN_PROGRESS"), (done["id"], "SYNCED")])
    return Ids(
        policy["id"], fresh["id"], busy["id"], runs[busy["id"]]["id"], runs[done["id"]]["id"]
    )


def operations(ids: Ids) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(needed role, name, document, variables)."""
    return [
        ("VIEWER", "syncMetrics", h.METRICS, {}),
        ("VIEWER", "syncUsers", h.SYNC_USERS, {"first": 5}),
        ("VIEWER", "policies", h.POLICIES, {"first": 5}),
        ("VIEWER", "syncUser", h.USER, {"id": ids.busy}),
        ("VIEWER", "syncRun", h.RUN, {"id": ids.run}),
        ("VIEWER", "node", "query($id: ID!) { node(id: $id) { id } }", {"id": ids.policy}),
        ("OPERATOR", "requestSync", h.REQUEST_SYNC, {"id": ids.fresh}),
        ("VIEWER", "failureReasons", "{ failureReasons { errorCode userCount } }", {}),
        (
            "VIEWER",
            "syncTrends",
            'query { syncTrends(since: "2026-01-01T00:00:00Z", until: "2026-01-02T00:00:00Z")'
            " { at runsStarted } }",
            {},
        ),
        (
            "OPERATOR",
            "requestSyncs",
            "mutation { requestSyncs(filter: {}) { requested skipped } }",
            {},
        ),
        ("WORKER", "startSyncRun", h.START, {"user": ids.fresh}),
        ("WORKER", "reportSyncProgress", h.REPORT, {"run": ids.run, "processed": 3, "changes": 2}),
        ("WORKER", "finishSyncRun", h.FINISH, {"run": ids.run}),
        ("WORKER", "claimDueSyncRuns", h.CLAIM, {"limit": 5}),
        (
            "ADMIN",
            "createPolicy",
            h.CREATE_POLICY,
            {"input": {"name": "New", "syncIntervalMinutes": 60}},
        ),
        (
            "ADMIN",
            "updatePolicy",
            h.UPDATE_POLICY,
            {"id": ids.policy, "input": {"name": "Renamed", "syncIntervalMinutes": 30}},
        ),
        ("ADMIN", "setPolicyActive", h.SET_ACTIVE, {"id": ids.policy, "active": False}),
        (
            "ADMIN",
            "addSyncUsers",
            h.ADD_USERS,
            {"users": [{"email": "x@r.example", "destinationEmail": "x@d.example"}]},
        ),
        ("ADMIN", "assignPolicy", h.ASSIGN, {"ids": [ids.fresh], "policy": None}),
        (
            "ADMIN",
            "createApiToken",
            'mutation { createApiToken(name: "t", role: ADMIN) { token } }',
            {},
        ),
    ]


ALLOWED = {
    "viewer": {"VIEWER"},
    "operator": {"VIEWER", "OPERATOR"},
    "worker": {"VIEWER", "WORKER"},
    "admin": {"VIEWER", "OPERATOR", "WORKER", "ADMIN"},
}


@pytest.mark.parametrize("role", ["viewer", "operator", "worker"])
async def test_what_a_role_may_not_do_is_forbidden_and_changes_nothing(
    tenant: ApiTenant, role: str
) -> None:
    ids = await _setup(tenant)
    before = await h.snapshot(tenant.admin)
    api = tenant.api(role)
    forbidden = [op for op in operations(ids) if op[0] not in ALLOWED[role]]
    assert forbidden
    for _, name, document, variables in forbidden:
        errors = await api.errors(document, **variables)
        assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"], name
    assert await h.snapshot(tenant.admin) == before


@pytest.mark.parametrize("role", ["viewer", "operator", "worker", "admin"])
async def test_what_a_role_may_do_works(tenant: ApiTenant, role: str) -> None:
    ids = await _setup(tenant)
    api = tenant.api(role)
    for needed, name, document, variables in operations(ids):
        if needed in ALLOWED[role]:
            data = await api.execute(document, **variables)
            assert data[name] is not None, name
    if role in ("worker", "admin"):
        # The run reported and finished through this role.
        found = await h.run(tenant.viewer, ids.run)
        assert (found["state"], found["itemsProcessed"], found["changes"]) == ("SUCCEEDED", 3, 2)


async def test_created_tokens_carry_their_role_and_tenant(
    tenant: ApiTenant, other_tenant: ApiTenant
) -> None:
    created = (
        await tenant.admin.execute(
            'mutation { createApiToken(name: " Dashboard ", role: VIEWER) { token role name } }'
        )
    )["createApiToken"]
    assert created["role"] == "VIEWER" and created["name"] == "Dashboard"
    assert created["token"].startswith("sst_")
    viewer = Api(tenant.admin.graphql_url, tenant.admin.ws_url, created["token"])
    await h.add_users(tenant.admin, ["seen@r.example"])
    assert (await h.metrics(viewer))["totalUsers"] == 1
    assert (await h.metrics(other_tenant.viewer))["totalUsers"] == 0
    code = await viewer.error_code(h.CREATE_POLICY, input={"name": "N", "syncIntervalMinutes": 60})
    assert code == "FORBIDDEN"


BAD_TOKENS = [
    None,
    "sst_not-a-real-token",
    "x" * 5000,
    "",
]


@pytest.mark.parametrize("token", BAD_TOKENS, ids=["missing", "unknown", "huge", "empty"])
async def test_no_or_a_bad_token_is_unauthenticated(tenant: ApiTenant, token: str | None) -> None:
    ids = await _setup(tenant)
    before = await h.snapshot(tenant.admin)
    api = Api(tenant.admin.graphql_url, tenant.admin.ws_url, token)
    for _, name, document, variables in operations(ids):
        errors = await api.errors(document, **variables)
        assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"], name
    assert await h.snapshot(tenant.admin) == before


@pytest.mark.parametrize(
    "header", ["Basic abc", "Bearer", "bearer sst_nope", "Token sst_x", "Bearer a b"]
)
async def test_malformed_authorization_headers(tenant: ApiTenant, header: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            tenant.server.graphql_url,
            json={"query": "{ syncMetrics { totalUsers } }"},
            headers={"Authorization": header},
        )
    assert response.status_code < 500
    body = response.json()
    assert body.get("data") is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


async def test_a_valid_token_with_another_scheme_is_refused(tenant: ApiTenant) -> None:
    token = tenant.viewer.token
    assert token is not None
    async with httpx.AsyncClient() as client:
        for header in (f"Basic {token}", token, f"Bearer {token}x"):
            response = await client.post(
                tenant.server.graphql_url,
                json={"query": "{ syncMetrics { totalUsers } }"},
                headers={"Authorization": header},
            )
            assert [e["extensions"]["code"] for e in response.json()["errors"]] == [
                "UNAUTHENTICATED"
            ]
        ok = await client.post(
            tenant.server.graphql_url,
            json={"query": "{ syncMetrics { totalUsers } }"},
            headers={"Authorization": f"bearer   {token}"},
        )
        assert ok.json() == {"data": {"syncMetrics": {"totalUsers": 0}}}
