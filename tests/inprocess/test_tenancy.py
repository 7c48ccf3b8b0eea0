"""Tenant isolation: another tenant's ids behave as if they did not exist (queries null,
mutations NOT_FOUND), its cursors are rejected, and nothing of it is ever visible or touched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.api import Api
from tests.api_tests import helpers as h
from tests.conftest import Tenant

NODE = "query($id: ID!) { node(id: $id) { id } }"


@dataclass
class Objects:
    policy: str
    user: str
    run: str  # running
    done_run: str


async def _populate(tenant: Tenant, email: str) -> Objects:
    policy = await h.create_policy(tenant.admin, "Shared name")
    user, done = await h.add_users(tenant.admin, [email, f"done.{email}"], policy["id"])
    runs = await h.drive(tenant.worker, [(done["id"], "SYNCED")])
    run = await h.start(tenant.worker, user["id"])
    return Objects(policy["id"], user["id"], run["id"], runs[done["id"]]["id"])


async def test_another_tenants_ids_do_not_exist(tenant: Tenant, other_tenant: Tenant) -> None:
    mine = await _populate(tenant, "same@t.example")
    theirs = await _populate(other_tenant, "same@t.example")  # the same email: no conflict
    before_mine = await h.snapshot(tenant.admin)
    before_theirs = await h.snapshot(other_tenant.admin)

    viewer = tenant.viewer
    assert (await viewer.execute(h.USER, id=theirs.user))["syncUser"] is None
    assert (await viewer.execute(h.RUN, id=theirs.run))["syncRun"] is None
    for node_id in (theirs.user, theirs.run, theirs.policy, theirs.done_run):
        assert (await viewer.execute(NODE, id=node_id))["node"] is None
    filtered = await viewer.execute(h.SYNC_USERS, filter={"policyId": theirs.policy})
    assert filtered["syncUsers"]["totalCount"] == 0 and filtered["syncUsers"]["edges"] == []

    admin, worker = tenant.admin, tenant.worker
    not_found: list[tuple[Api, str, dict[str, Any]]] = [
        (worker, h.START, {"user": theirs.user}),
        (worker, h.REPORT, {"run": theirs.run, "processed": 1, "changes": 1}),
        (worker, h.FINISH, {"run": theirs.run}),
        (worker, h.FINISH, {"run": theirs.done_run}),
        (tenant.operator, h.REQUEST_SYNC, {"id": theirs.user}),
        (
            admin,
            h.UPDATE_POLICY,
            {"id": theirs.policy, "input": {"name": "Mine now", "syncIntervalMinutes": 60}},
        ),
        (admin, h.SET_ACTIVE, {"id": theirs.policy, "active": False}),
        (admin, h.ASSIGN, {"ids": [theirs.user], "policy": None}),
        (admin, h.ASSIGN, {"ids": [theirs.user], "policy": mine.policy}),
        (admin, h.ASSIGN, {"ids": [mine.user], "policy": theirs.policy}),
        (admin, h.ASSIGN, {"ids": [mine.user, theirs.user], "policy": None}),
        (
            admin,
            h.ADD_USERS,
            {
                "users": [
                    {
                        "email": "n@t.example",
                        "destinationEmail": "n@d.example",
                        "policyId": theirs.policy,
                    }
                ]
            },
        ),
    ]
    for api, document, variables in not_found:
        errors = await api.errors(document, **variables)
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], (document, variables)
    assert await h.snapshot(tenant.admin) == before_mine
    assert await h.snapshot(other_tenant.admin) == before_theirs


async def test_another_tenants_cursors_are_rejected(tenant: Tenant, other_tenant: Tenant) -> None:
    mine = await _populate(tenant, "a@t.example")
    theirs = await _populate(other_tenant, "a@t.example")
    await h.create_policy(other_tenant.admin, "Another")
    their_users = (await other_tenant.viewer.execute(h.SYNC_USERS, first=1))["syncUsers"]
    their_latest = (
        await other_tenant.viewer.execute(h.SYNC_USERS, first=1, order="LATEST_SYNC_DESC")
    )["syncUsers"]
    their_policies = (await other_tenant.viewer.execute(h.POLICIES, first=1))["policies"]
    their_runs = (await other_tenant.viewer.execute(h.RUNS, id=theirs.user, first=1))["syncUser"]
    cursor_of = {
        "users": their_users["edges"][0]["cursor"],
        "latest": their_latest["edges"][0]["cursor"],
        "policies": their_policies["edges"][0]["cursor"],
        "runs": their_runs["runs"]["edges"][0]["cursor"],
    }
    viewer = tenant.viewer
    for arg in ("after", "before"):
        code = await viewer.error_code(h.SYNC_USERS, **{arg: cursor_of["users"]})
        assert code == "BAD_USER_INPUT"
        code = await viewer.error_code(
            h.SYNC_USERS, order="LATEST_SYNC_DESC", **{arg: cursor_of["latest"]}
        )
        assert code == "BAD_USER_INPUT"
        assert (
            await viewer.error_code(h.POLICIES, **{arg: cursor_of["policies"]}) == "BAD_USER_INPUT"
        )
        code = await viewer.error_code(h.RUNS, id=mine.user, **{arg: cursor_of["runs"]})
        assert code == "BAD_USER_INPUT"
    # The same lists with their own cursors work.
    own = (await viewer.execute(h.SYNC_USERS, first=1))["syncUsers"]["edges"][0]["cursor"]
    rest = (await viewer.execute(h.SYNC_USERS, first=10, after=own))["syncUsers"]
    assert [e["node"]["email"] for e in rest["edges"]] == ["done.a@t.example"]


async def test_metrics_and_lists_never_mix_tenants(tenant: Tenant, other_tenant: Tenant) -> None:
    await _populate(tenant, "mine@t.example")
    other_policy = await h.create_policy(other_tenant.admin, "Big")
    await h.add_users(other_tenant.admin, [f"o{i}@t.example" for i in range(7)], other_policy["id"])
    found = await h.metrics(tenant.viewer)
    assert (found["totalUsers"], found["syncsInProgress"], found["usersWithActivePolicy"]) == (
        2,
        1,
        2,
    )
    assert [u["email"] for u in await h.all_users(tenant.viewer)] == [
        "done.mine@t.example",
        "mine@t.example",
    ]
    assert [p["name"] for p in await h.all_policies(tenant.viewer)] == ["Shared name"]
    # Claims only ever start runs of the caller's tenant.
    claimed = (await other_tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"]
    assert len(claimed) == 7
    assert (await tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"] == []
    assert (await h.metrics(tenant.viewer))["syncsInProgress"] == 1
