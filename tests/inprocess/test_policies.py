"""Policies: defaults, the policies list, and what setPolicyActive, updatePolicy and
assignPolicy do to userCount, metrics, schedules and the users' versions."""

from __future__ import annotations

from tests.api_tests import helpers as h
from tests.conftest import Tenant


async def test_create_policy_defaults_and_fields(tenant: Tenant) -> None:
    plain = (
        await tenant.admin.execute(
            h.CREATE_POLICY, input={"name": "  Plain  ", "syncIntervalMinutes": 15}
        )
    )["createPolicy"]
    assert {k: plain[k] for k in ("name", "description", "active", "services", "userCount")} == {
        "name": "Plain",
        "description": None,
        "active": False,  # saved inactive unless asked
        "services": ["MAIL"],
        "userCount": 0,
    }
    assert plain["syncIntervalMinutes"] == 15 and plain["createdAt"] == plain["updatedAt"]
    full = await h.create_policy(
        tenant.admin,
        "Full",
        interval=10080,
        services=["DRIVE", "MAIL", "DRIVE"],
        description="Weekly",
    )
    assert (full["active"], full["services"], full["description"]) == (
        True,
        ["DRIVE", "MAIL"],
        "Weekly",
    )
    node = await tenant.viewer.execute(
        "query($id: ID!) { node(id: $id) { id ... on Policy { name userCount } } }", id=full["id"]
    )
    assert node["node"] == {"id": full["id"], "name": "Full", "userCount": 0}


async def test_policies_are_listed_by_name(tenant: Tenant) -> None:
    names = ["delta", "Alpha", "charlie", "Bravo", "echo", "alpha2", "Zulu"]
    for name in names:
        await h.create_policy(tenant.admin, name)
    viewer = tenant.viewer
    everything = (await viewer.execute(h.POLICIES, first=100))["policies"]
    listed = [e["node"]["name"] for e in everything["edges"]]
    assert sorted(listed) == sorted(names) and everything["totalCount"] == len(names)
    assert listed == sorted(names)  # by name (code points, as the database compares them)
    forward, after = [], None
    while True:
        page = (await viewer.execute(h.POLICIES, first=3, after=after))["policies"]
        forward += [e["node"]["name"] for e in page["edges"]]
        assert page["totalCount"] == len(names)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert forward == listed
    backward: list[str] = []
    before = None
    while True:
        page = (await viewer.execute(h.POLICIES, last=2, before=before))["policies"]
        backward = [e["node"]["name"] for e in page["edges"]] + backward
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert backward == listed
    default = (await viewer.execute("{ policies { edges { node { name } } } }"))["policies"]
    assert [e["node"]["name"] for e in default["edges"]] == listed[:10]


async def test_assign_policy_moves_users_and_counts(tenant: Tenant) -> None:
    admin, viewer = tenant.admin, tenant.viewer
    one = await h.create_policy(admin, "One")
    two = await h.create_policy(admin, "Two", active=False)
    users = await h.add_users(admin, [f"u{i}@p.example" for i in range(6)], one["id"])
    ids = [u["id"] for u in users]
    await h.drive(tenant.worker, [(ids[0], "IN_PROGRESS"), (ids[1], "FAILED")])

    async def counts() -> tuple[int, int, int]:
        found = {p["name"]: p["userCount"] for p in await h.all_policies(viewer)}
        return found["One"], found["Two"], (await h.metrics(viewer))["usersWithActivePolicy"]

    assert await counts() == (6, 0, 6)
    before = {u["id"]: u["version"] for u in await h.all_users(viewer)}
    moved = (await admin.execute(h.ASSIGN, ids=[ids[3], ids[0], ids[1], ids[3]], policy=two["id"]))[
        "assignPolicy"
    ]
    assert [u["id"] for u in moved] == [ids[3], ids[0], ids[1]]  # in order, once each
    assert {u["policy"]["id"] for u in moved} == {two["id"]}
    assert await counts() == (3, 3, 3)
    after = {u["id"]: u for u in await h.all_users(viewer)}
    for user_id in ids:
        grew = after[user_id]["version"] > before[user_id]
        assert grew == (user_id in (ids[0], ids[1], ids[3])), user_id
    # Statuses move with the users: the running one still counts as in progress.
    assert after[ids[0]]["status"] == "IN_PROGRESS" and after[ids[1]]["status"] == "FAILED"
    failed_in_two = await viewer.execute(
        h.SYNC_USERS, filter={"policyId": two["id"], "status": "FAILED"}
    )
    assert [e["node"]["id"] for e in failed_in_two["syncUsers"]["edges"]] == [ids[1]]
    assert failed_in_two["syncUsers"]["totalCount"] == 1

    unassigned = (await admin.execute(h.ASSIGN, ids=[ids[4], ids[0]], policy=None))["assignPolicy"]
    assert [u["policy"] for u in unassigned] == [None, None]
    assert await counts() == (2, 2, 2)
    # The running run of a user that lost its policy still finishes.
    run_id = after[ids[0]]["currentRun"]["id"]
    assert (await h.finish(tenant.worker, run_id))["state"] == "SUCCEEDED"
    found = await h.user(viewer, ids[0])
    assert (found["status"], found["policy"], found["nextScheduledSyncAt"]) == (
        "SYNCED",
        None,
        None,
    )
    # An empty list changes nothing.
    assert (await admin.execute(h.ASSIGN, ids=[], policy=one["id"]))["assignPolicy"] == []
    assert await counts() == (2, 2, 2)


async def test_deactivating_lets_running_runs_finish(tenant: Tenant) -> None:
    admin, worker, viewer = tenant.admin, tenant.worker, tenant.viewer
    policy = await h.create_policy(admin, "Busy")
    users = await h.add_users(admin, [f"b{i}@p.example" for i in range(4)], policy["id"])
    runs = await h.drive(worker, [(users[0]["id"], "IN_PROGRESS")])
    before = (await h.all_policies(viewer))[0]

    off = (await admin.execute(h.SET_ACTIVE, id=policy["id"], active=False))["setPolicyActive"]
    assert off["active"] is False and off["userCount"] == 4
    assert h.when(off["updatedAt"]) > h.when(before["updatedAt"])
    assert off["createdAt"] == before["createdAt"]
    metrics = await h.metrics(viewer)
    assert (metrics["usersWithActivePolicy"], metrics["syncsInProgress"]) == (0, 1)
    # Nobody is due under an inactive policy, not even on request.
    assert (await worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"] == []
    code = await tenant.operator.error_code(h.REQUEST_SYNC, id=users[1]["id"])
    assert code == "CONFLICT"
    # The running run reports and finishes as usual.
    run_id = runs[users[0]["id"]]["id"]
    await h.report(worker, run_id, 5, 2)
    assert (await h.finish(worker, run_id))["state"] == "SUCCEEDED"
    assert (await h.metrics(viewer))["syncsInProgress"] == 0

    on = (await admin.execute(h.SET_ACTIVE, id=policy["id"], active=True))["setPolicyActive"]
    assert on["active"] is True
    assert (await h.metrics(viewer))["usersWithActivePolicy"] == 4
    claimed = (await worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"]
    assert sorted(r["user"]["id"] for r in claimed) == sorted(u["id"] for u in users[1:])


async def test_update_policy(tenant: Tenant) -> None:
    admin, viewer = tenant.admin, tenant.viewer
    policy = await h.create_policy(admin, "Old", interval=60, services=["MAIL"])
    users = await h.add_users(admin, ["x@p.example", "y@p.example"], policy["id"])
    versions = {u["id"]: u["version"] for u in users}
    new_settings = {
        "name": "New",
        "description": "Now daily",
        "active": False,
        "syncIntervalMinutes": 1440,
        "services": ["CALENDAR", "MAIL"],
    }
    updated = (await admin.execute(h.UPDATE_POLICY, id=policy["id"], input=new_settings))[
        "updatePolicy"
    ]
    assert {k: updated[k] for k in ("id", "name", "description", "active")} == {
        "id": policy["id"],
        "name": "New",
        "description": "Now daily",
        "active": False,
    }
    assert (updated["syncIntervalMinutes"], updated["services"], updated["userCount"]) == (
        1440,
        ["CALENDAR", "MAIL"],
        2,
    )
    assert updated["createdAt"] == policy["createdAt"]
    assert h.when(updated["updatedAt"]) > h.when(policy["updatedAt"])
    for found in await h.all_users(viewer):
        assert found["version"] > versions[found["id"]]
        assert found["nextScheduledSyncAt"] is None  # inactive now
    assert (await h.metrics(viewer))["usersWithActivePolicy"] == 0
    # The same settings again: nothing changes, not even the versions.
    same = (await admin.execute(h.UPDATE_POLICY, id=policy["id"], input=new_settings))[
        "updatePolicy"
    ]
    assert same == updated
    # Reactivated through updatePolicy, with the policy defaults for what is not given.
    back = (
        await admin.execute(
            h.UPDATE_POLICY,
            id=policy["id"],
            input={"name": "New", "active": True, "syncIntervalMinutes": 1440},
        )
    )["updatePolicy"]
    assert (back["description"], back["services"], back["active"]) == (None, ["MAIL"], True)
    assert (await h.metrics(viewer))["usersWithActivePolicy"] == 2
