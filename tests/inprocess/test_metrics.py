"""The metric cards and policy user counts agree with what the API lists, after every kind of
change (invariants a test can check through the API alone), and hold exact values."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.api_tests import helpers as h
from tests.conftest import Tenant

RUN_CHANGES = """query($id: ID!) { syncUser(id: $id) { runs(first: 100) { edges { node {
  changes } } } } }"""


async def check_invariants(tenant: Tenant) -> dict[str, Any]:
    """Metrics and counts recomputed from the full lists; returns the metrics."""
    viewer = tenant.viewer
    users = await h.all_users(viewer)
    policies = await h.all_policies(viewer)
    found = await h.metrics(viewer)
    statuses = Counter(u["status"] for u in users)
    per_policy = Counter(u["policy"]["id"] for u in users if u["policy"])
    active = {p["id"] for p in policies if p["active"]}
    assert found["totalUsers"] == len(users)
    assert found["failedSyncs"] == statuses["FAILED"]
    assert found["syncsInProgress"] == statuses["IN_PROGRESS"]
    assert found["usersWithActivePolicy"] == sum(p["userCount"] for p in policies if p["active"])
    assert found["usersWithActivePolicy"] == sum(per_policy[p] for p in active)
    for policy in policies:
        assert policy["userCount"] == per_policy[policy["id"]], policy["name"]
    changes = 0
    for u in users:
        runs = (await viewer.execute(RUN_CHANGES, id=u["id"]))["syncUser"]["runs"]["edges"]
        changes += sum(e["node"]["changes"] for e in runs)
    assert found["changesLast24h"] == changes
    # The exact counts of the table agree as well.
    for status in h.STATUSES:
        page = await viewer.execute(h.SYNC_USERS, filter={"status": status}, first=1)
        assert page["syncUsers"]["totalCount"] == statuses[status], status
    for policy in policies:
        for status in ("IN_PROGRESS", "FAILED"):
            page = await viewer.execute(
                h.SYNC_USERS, filter={"policyId": policy["id"], "status": status}, first=1
            )
            expected = sum(
                1
                for u in users
                if u["status"] == status and u["policy"] and u["policy"]["id"] == policy["id"]
            )
            assert page["syncUsers"]["totalCount"] == expected
    return found


def cards(found: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return (
        found["usersWithActivePolicy"],
        found["changesLast24h"],
        found["syncsInProgress"],
        found["failedSyncs"],
        found["totalUsers"],
    )


async def test_metrics_of_an_empty_tenant(tenant: Tenant) -> None:
    assert cards(await check_invariants(tenant)) == (0, 0, 0, 0, 0)
    await h.create_policy(tenant.admin, "Empty")
    assert cards(await check_invariants(tenant)) == (0, 0, 0, 0, 0)


async def test_metrics_follow_every_change(tenant: Tenant) -> None:
    admin, worker = tenant.admin, tenant.worker
    exec_ = await h.create_policy(admin, "Exec", interval=60)
    sales = await h.create_policy(admin, "Sales", interval=240)
    archive = await h.create_policy(admin, "Archive", active=False, interval=10080)
    e = await h.add_users(admin, [f"e{i}@m.example" for i in range(6)], exec_["id"])
    s = await h.add_users(admin, [f"s{i}@m.example" for i in range(5)], sales["id"])
    a = await h.add_users(admin, [f"a{i}@m.example" for i in range(4)], archive["id"])
    n = await h.add_users(admin, [f"n{i}@m.example" for i in range(3)])
    assert cards(await check_invariants(tenant)) == (11, 0, 0, 0, 18)

    targets = [
        (e[0]["id"], "IN_PROGRESS"),
        (e[1]["id"], "FAILED"),
        (e[2]["id"], "FAILED"),
        (e[3]["id"], "SYNCED"),
        (e[4]["id"], "COMPLETED_WITH_WARNING"),
        (s[0]["id"], "IN_PROGRESS"),
        (s[1]["id"], "FAILED"),
        (a[0]["id"], "IN_PROGRESS"),
        (a[1]["id"], "FAILED"),
        (n[0]["id"], "SYNCED"),
        (n[1]["id"], "FAILED"),
    ]
    runs = await h.drive(worker, targets, changes=3)
    assert cards(await check_invariants(tenant)) == (11, 33, 3, 5, 18)

    # Progress: the growth of the cumulative counter, once.
    running = runs[e[0]["id"]]["id"]
    await h.report(worker, running, 9, 10)
    await h.report(worker, running, 9, 10)
    await h.report(worker, running, 9, 8)
    assert cards(await check_invariants(tenant)) == (11, 40, 3, 5, 18)

    # A failed user starts again: no longer FAILED while running; it fails again.
    rerun = await h.start(worker, e[1]["id"])
    assert cards(await check_invariants(tenant)) == (11, 40, 4, 4, 18)
    await h.finish(worker, rerun["id"], code="ERR_QUOTA_507")
    assert cards(await check_invariants(tenant)) == (11, 40, 3, 5, 18)

    # Policies: deactivate, move users (running and failed ones too), unassign, reactivate.
    await admin.execute(h.SET_ACTIVE, id=sales["id"], active=False)
    assert cards(await check_invariants(tenant)) == (6, 40, 3, 5, 18)
    await admin.execute(
        h.ASSIGN, ids=[s[0]["id"], s[1]["id"], n[2]["id"], a[0]["id"]], policy=exec_["id"]
    )
    assert cards(await check_invariants(tenant)) == (10, 40, 3, 5, 18)
    await admin.execute(h.ASSIGN, ids=[e[0]["id"], e[1]["id"]], policy=None)
    assert cards(await check_invariants(tenant)) == (8, 40, 3, 5, 18)
    await admin.execute(h.SET_ACTIVE, id=archive["id"], active=True)
    assert cards(await check_invariants(tenant)) == (11, 40, 3, 5, 18)
    await admin.execute(
        h.UPDATE_POLICY,
        id=exec_["id"],
        input={"name": "Exec", "active": False, "syncIntervalMinutes": 60},
    )
    assert cards(await check_invariants(tenant)) == (3, 40, 3, 5, 18)

    # Finishing runs under an inactive policy (or none) still counts.
    await h.finish(worker, runs[s[0]["id"]]["id"], code="ERR_USER_404")
    await h.finish(worker, running)
    assert cards(await check_invariants(tenant)) == (3, 40, 1, 6, 18)

    # New users join the counts at once.
    await h.add_users(admin, ["late1@m.example", "late2@m.example"], archive["id"])
    assert cards(await check_invariants(tenant)) == (5, 40, 1, 6, 20)
