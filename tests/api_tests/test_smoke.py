"""The basic round trip: admin creates a policy and users, a worker syncs, a viewer sees it."""

from __future__ import annotations

from tests.conftest import Tenant

SETUP = """
mutation($name: String!) {
  createPolicy(input: {name: $name, active: true, syncIntervalMinutes: 60}) { id name active }
}
"""
ADD = """
mutation($users: [SyncUserInput!]!) { addSyncUsers(users: $users) { id email status version } }
"""
START = "mutation($u: ID!) { startSyncRun(userId: $u, itemsTotal: 10) { id state kind } }"
REPORT = """mutation($r: ID!, $p: Int!, $c: Int!) {
  reportSyncProgress(runId: $r, itemsProcessed: $p, changes: $c) { itemsProcessed progress } }"""
FINISH = "mutation($r: ID!) { finishSyncRun(runId: $r) { state } }"
USER = "query($id: ID!) { syncUser(id: $id) { status version latestSyncAt } }"
METRICS = "{ syncMetrics { usersWithActivePolicy changesLast24h syncsInProgress failedSyncs } }"


async def test_round_trip(tenant: Tenant) -> None:
    policy = (await tenant.admin.execute(SETUP, name="Hourly"))["createPolicy"]
    users = (
        await tenant.admin.execute(
            ADD,
            users=[{"email": "a@x.com", "destinationEmail": "a@y.com", "policyId": policy["id"]}],
        )
    )["addSyncUsers"]
    assert users[0]["status"] == "NEVER_SYNCED"
    run = (await tenant.worker.execute(START, u=users[0]["id"]))["startSyncRun"]
    assert run["state"] == "RUNNING" and run["kind"] == "INITIAL"
    metrics = (await tenant.viewer.execute(METRICS))["syncMetrics"]
    assert metrics == {
        "usersWithActivePolicy": 1,
        "changesLast24h": 0,
        "syncsInProgress": 1,
        "failedSyncs": 0,
    }
    progress = (await tenant.worker.execute(REPORT, r=run["id"], p=5, c=3))["reportSyncProgress"]
    assert progress == {"itemsProcessed": 5, "progress": 0.5}
    assert (await tenant.worker.execute(FINISH, r=run["id"]))["finishSyncRun"]["state"] == (
        "SUCCEEDED"
    )
    user = (await tenant.viewer.execute(USER, id=users[0]["id"]))["syncUser"]
    assert user["status"] == "SYNCED" and user["version"] == 4
    metrics = (await tenant.viewer.execute(METRICS))["syncMetrics"]
    assert metrics["changesLast24h"] == 3 and metrics["syncsInProgress"] == 0
