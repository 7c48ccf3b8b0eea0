"""The audit log: every administrative and operator action writes an AuditEvent with the change
(who, what, when, on what, a one-line summary); auditEvents is ADMIN only, newest first, keyset
paged with an exact totalCount, and shows nothing of another tenant. `syncstatus audit` printing
it and `syncstatus token create` recording actor "cli": tests/inprocess/test_cli.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api import Api
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant

AUDIT = """query($filter: AuditEventFilter, $first: Int, $after: String, $last: Int,
  $before: String) {
  auditEvents(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id at actor actorRole action targetId summary } } } }"""
NODE = "query($id: ID!) { node(id: $id) { id ... on AuditEvent { action summary } } }"


async def events(api: Api, **filt: Any) -> list[dict[str, Any]]:
    """Every event matching the filter, newest first, page by page."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await api.execute(AUDIT, filter=filt or None, first=100, after=after))[
            "auditEvents"
        ]
        found += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def test_each_action_is_recorded_with_who_what_and_target(tenant: ApiTenant) -> None:
    admin = tenant.admin
    operator = tenant.operator  # createApiToken by the admin: token.create
    policy = await h.create_policy(admin, "Sales", interval=60, services=["MAIL", "CALENDAR"])
    await admin.execute(
        h.UPDATE_POLICY,
        id=policy["id"],
        input={"name": "Sales", "active": True, "syncIntervalMinutes": 30, "services": ["MAIL"]},
    )
    await admin.execute(h.SET_ACTIVE, id=policy["id"], active=False)
    await admin.execute(h.SET_ACTIVE, id=policy["id"], active=True)
    users = await h.add_users(admin, ["ann@a.example", "bob@a.example"])
    await admin.execute(h.ASSIGN, ids=[u["id"] for u in users], policy=policy["id"])
    await operator.execute(h.REQUEST_SYNC, id=users[0]["id"])

    found = await events(admin)
    assert [e["action"] for e in found] == [
        "sync.request",
        "users.assign",
        "users.add",
        "policy.activate",
        "policy.deactivate",
        "policy.update",
        "policy.create",
        "token.create",
    ]
    by_action = {e["action"]: e for e in found}
    for action in ("policy.create", "policy.update", "policy.activate", "users.add"):
        assert (by_action[action]["actor"], by_action[action]["actorRole"]) == ("tests", "ADMIN")
    assert (by_action["sync.request"]["actor"], by_action["sync.request"]["actorRole"]) == (
        "operator",
        "OPERATOR",
    )
    assert by_action["policy.create"]["summary"] == (
        "Policy 'Sales' created: every 60 min, MAIL+CALENDAR, active"
    )
    assert by_action["policy.update"]["summary"] == (
        "Policy 'Sales' updated: every 30 min (was 60), MAIL (was MAIL+CALENDAR)"
    )
    assert by_action["policy.deactivate"]["summary"] == "Policy 'Sales' deactivated"
    assert by_action["users.add"]["summary"] == "2 users added: ann@a.example, bob@a.example"
    assert by_action["users.assign"]["summary"] == (
        "2 users assigned to policy 'Sales' (2 changed): ann@a.example, bob@a.example"
    )
    assert by_action["sync.request"]["summary"] == "Sync requested for ann@a.example"
    assert by_action["token.create"]["summary"] == "Token 'operator' created with role OPERATOR"
    for action in ("policy.create", "policy.update", "policy.activate", "users.assign"):
        assert by_action[action]["targetId"] == policy["id"]
    assert by_action["sync.request"]["targetId"] == users[0]["id"]
    assert by_action["users.add"]["targetId"] is None  # two users: no single target
    assert by_action["token.create"]["targetId"]
    times = [h.when(e["at"]) for e in found]
    assert times == sorted(times, reverse=True)
    node = (await admin.execute(NODE, id=found[0]["id"]))["node"]
    assert node == {"id": found[0]["id"], "action": "sync.request", "summary": found[0]["summary"]}


async def test_a_failed_action_records_nothing(tenant: ApiTenant) -> None:
    admin = tenant.admin
    await h.create_policy(admin, "Dup")
    code = await admin.error_code(
        h.CREATE_POLICY, input={"name": "Dup", "active": True, "syncIntervalMinutes": 60}
    )
    assert code == "CONFLICT"
    assert [e["action"] for e in await events(admin)] == ["policy.create"]


@pytest.mark.parametrize("role", ["viewer", "operator", "worker"])
async def test_only_admins_read_the_audit_log(tenant: ApiTenant, role: str) -> None:
    assert await tenant.api(role).error_code(AUDIT) == "FORBIDDEN"


async def test_nothing_of_another_tenant_shows(tenant: ApiTenant, other_tenant: ApiTenant) -> None:
    policy = await h.create_policy(tenant.admin, "Mine")
    mine = await events(tenant.admin)
    assert [e["action"] for e in mine] == ["policy.create"]
    await h.create_policy(other_tenant.admin, "Theirs")
    theirs = await events(other_tenant.admin)
    assert [e["summary"] for e in theirs] == ["Policy 'Theirs' created: every 60 min, MAIL, active"]
    assert (await other_tenant.admin.execute(NODE, id=mine[0]["id"]))["node"] is None
    page = (await tenant.admin.execute(AUDIT, first=1))["auditEvents"]
    code = await other_tenant.admin.error_code(AUDIT, after=page["pageInfo"]["endCursor"])
    assert code == "BAD_USER_INPUT"  # a cursor of another tenant's list
    assert policy["id"] not in {e["targetId"] for e in theirs}


async def test_pages_filters_and_exact_totals(tenant: ApiTenant) -> None:
    admin = tenant.admin
    policy = await h.create_policy(admin, "Toggle")
    for i in range(12):
        await admin.execute(h.SET_ACTIVE, id=policy["id"], active=i % 2 == 1)
    everything = await events(admin)
    assert len(everything) == 13
    deactivations = await events(admin, action="policy.deactivate")
    assert len(deactivations) == 6
    assert all(e["action"] == "policy.deactivate" for e in deactivations)

    # Forward in pages of 5, then backward from the end: the same events, the same totals.
    forward: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await admin.execute(AUDIT, first=5, after=after))["auditEvents"]
        assert page["totalCount"] == 13
        forward += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert forward == everything
    last = (await admin.execute(AUDIT, last=5))["auditEvents"]
    assert [e["node"] for e in last["edges"]] == everything[-5:]
    assert last["pageInfo"]["hasPreviousPage"] and not last["pageInfo"]["hasNextPage"]
    before = (await admin.execute(AUDIT, last=5, before=last["pageInfo"]["startCursor"]))[
        "auditEvents"
    ]
    assert [e["node"] for e in before["edges"]] == everything[-10:-5]

    # since/until are inclusive bounds on `at`.
    middle = everything[6]
    at = h.when(middle["at"])
    since = await events(admin, since=h.iso(at))
    until = await events(admin, until=h.iso(at))
    assert since == everything[:7] and until == everything[6:]
    window = (
        await admin.execute(
            AUDIT, filter={"since": h.iso(at), "until": h.iso(at), "action": middle["action"]}
        )
    )["auditEvents"]
    assert [e["node"] for e in window["edges"]] == [middle] and window["totalCount"] == 1
    later = await events(admin, since=h.iso(h.when(everything[0]["at"]) + timedelta(seconds=1)))
    assert later == []
    assert await admin.error_code(AUDIT, filter={"action": "policy.explode"}) == "BAD_USER_INPUT"
    assert await admin.error_code(AUDIT, first=101) == "BAD_USER_INPUT"
