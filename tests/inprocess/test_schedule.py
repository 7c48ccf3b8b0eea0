"""nextScheduledSyncAt, claimDueSyncRuns and requestSync: who is due, when, and for whom."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.api_tests import helpers as h
from tests.conftest import Tenant

SLACK = timedelta(seconds=2)


def _is_now(value: str, before: datetime, after: datetime) -> bool:
    return before - SLACK <= h.when(value) <= after + SLACK


async def _next_at(tenant: Tenant, user_id: str) -> tuple[str | None, datetime, datetime]:
    before = datetime.now(UTC)
    found = (await h.user(tenant.viewer, user_id))["nextScheduledSyncAt"]
    return found, before, datetime.now(UTC)


async def test_next_scheduled_sync(tenant: Tenant) -> None:
    admin, worker = tenant.admin, tenant.worker
    hourly = await h.create_policy(admin, "Hourly", interval=60)
    paused = await h.create_policy(admin, "Paused", active=False, interval=60)
    fresh, synced, loose, idle = await h.add_users(
        admin, ["fresh@s.example", "synced@s.example", "loose@s.example"], hourly["id"]
    ) + await h.add_users(admin, ["idle@s.example"], paused["id"])
    (nobody,) = await h.add_users(admin, ["nobody@s.example"])

    # Never synced with an active policy: due now. Without an (active) policy: null.
    found, before, after = await _next_at(tenant, fresh["id"])
    assert found is not None and _is_now(found, before, after)
    assert (await h.user(tenant.viewer, idle["id"]))["nextScheduledSyncAt"] is None
    assert (await h.user(tenant.viewer, nobody["id"]))["nextScheduledSyncAt"] is None

    # After a run started: that start + the interval, running or finished.
    run = await h.start(worker, synced["id"])
    expected = h.when(run["startedAt"]) + timedelta(minutes=60)
    assert h.when((await h.user(tenant.viewer, synced["id"]))["nextScheduledSyncAt"]) == expected
    await h.finish(worker, run["id"], code="ERR_TOKEN_001")
    assert h.when((await h.user(tenant.viewer, synced["id"]))["nextScheduledSyncAt"]) == expected

    # A new interval moves it; deactivating the policy makes it null, reactivating restores it.
    await admin.execute(
        h.UPDATE_POLICY,
        id=hourly["id"],
        input={"name": "Hourly", "active": True, "syncIntervalMinutes": 15},
    )
    expected = h.when(run["startedAt"]) + timedelta(minutes=15)
    assert h.when((await h.user(tenant.viewer, synced["id"]))["nextScheduledSyncAt"]) == expected
    await admin.execute(h.SET_ACTIVE, id=hourly["id"], active=False)
    assert (await h.user(tenant.viewer, synced["id"]))["nextScheduledSyncAt"] is None
    assert (await h.user(tenant.viewer, fresh["id"]))["nextScheduledSyncAt"] is None
    await admin.execute(h.SET_ACTIVE, id=hourly["id"], active=True)
    assert h.when((await h.user(tenant.viewer, synced["id"]))["nextScheduledSyncAt"]) == expected

    # Requested: now, until the next run starts.
    requested = (await tenant.operator.execute(h.REQUEST_SYNC, id=synced["id"]))["requestSync"]
    found, before, after = await _next_at(tenant, synced["id"])
    assert found is not None and _is_now(found, before, after)
    assert _is_now(requested["nextScheduledSyncAt"], before - SLACK, after)
    again = await h.start(worker, synced["id"])
    expected = h.when(again["startedAt"]) + timedelta(minutes=15)
    assert h.when((await h.user(tenant.viewer, synced["id"]))["nextScheduledSyncAt"]) == expected

    # Moving a synced user to another policy takes that policy's interval; unassigning: null.
    daily = await h.create_policy(admin, "Daily", interval=1440)
    await admin.execute(h.ASSIGN, ids=[synced["id"]], policy=daily["id"])
    expected = h.when(again["startedAt"]) + timedelta(minutes=1440)
    assert h.when((await h.user(tenant.viewer, synced["id"]))["nextScheduledSyncAt"]) == expected
    await admin.execute(h.ASSIGN, ids=[synced["id"], loose["id"]], policy=None)
    for user_id in (synced["id"], loose["id"]):
        assert (await h.user(tenant.viewer, user_id))["nextScheduledSyncAt"] is None
    # Assigning a never-synced user: due now.
    await admin.execute(h.ASSIGN, ids=[nobody["id"]], policy=daily["id"])
    found, before, after = await _next_at(tenant, nobody["id"])
    assert found is not None and _is_now(found, before, after)


async def test_claim_starts_runs_for_due_users_only(tenant: Tenant) -> None:
    admin, worker, viewer = tenant.admin, tenant.worker, tenant.viewer
    active = await h.create_policy(admin, "Active", services=["CALENDAR", "MAIL"])
    inactive = await h.create_policy(admin, "Inactive", active=False)
    due, recent, running = await h.add_users(
        admin, ["due@c.example", "recent@c.example", "running@c.example"], active["id"]
    )
    (paused,) = await h.add_users(admin, ["paused@c.example"], inactive["id"])
    (loose,) = await h.add_users(admin, ["loose@c.example"])
    # recent: synced a moment ago (due in an hour); running: a run is running.
    await h.drive(worker, [(recent["id"], "FAILED"), (running["id"], "IN_PROGRESS")])
    await tenant.operator.execute(h.REQUEST_SYNC, id=running["id"])  # requested, but running

    claimed = (await worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"]
    assert [c["user"]["id"] for c in claimed] == [due["id"]]
    (run,) = claimed
    assert (run["state"], run["kind"], run["service"]) == ("RUNNING", "INITIAL", "CALENDAR")
    assert (run["itemsProcessed"], run["changes"], run["finishedAt"]) == (0, 0, None)
    now = await h.user(viewer, due["id"])
    assert now["status"] == "IN_PROGRESS" and now["currentRun"]["id"] == run["id"]
    assert now["latestSyncAt"] == run["startedAt"]
    assert (await h.metrics(viewer))["syncsInProgress"] == 2
    assert (await worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"] == []

    # "Sync now" makes a user due at once; the claimed run is a DELTA of the first service.
    await tenant.operator.execute(h.REQUEST_SYNC, id=recent["id"])
    (delta,) = (await worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"]
    assert (delta["user"]["id"], delta["kind"]) == (recent["id"], "DELTA")
    assert (await worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"] == []

    # When the running run finishes, its pending request makes it due.
    await h.finish(worker, now["currentRun"]["id"])
    await h.finish(worker, (await h.user(viewer, running["id"]))["currentRun"]["id"])
    (rerun,) = (await worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"]
    assert rerun["user"]["id"] == running["id"]

    # Neither the inactive policy's user nor the unassigned one was ever claimed.
    for user_id in (paused["id"], loose["id"]):
        found = await h.user(viewer, user_id)
        assert found["status"] == "NEVER_SYNCED" and found["latestSyncAt"] is None


async def test_claim_honours_services_and_limit(tenant: Tenant) -> None:
    admin, worker = tenant.admin, tenant.worker
    calendar = await h.create_policy(admin, "Calendar only", services=["CALENDAR"])
    mail = await h.create_policy(admin, "Mail and drive", services=["MAIL", "DRIVE"])
    cal_users = await h.add_users(admin, [f"cal{i}@l.example" for i in range(3)], calendar["id"])
    mail_users = await h.add_users(admin, [f"mail{i}@l.example" for i in range(5)], mail["id"])

    assert (await worker.execute(h.CLAIM, limit=10, services=["CONTACTS"]))[
        "claimDueSyncRuns"
    ] == []
    drive = (await worker.execute(h.CLAIM, limit=2, services=["DRIVE"]))["claimDueSyncRuns"]
    assert len(drive) == 2 and {r["service"] for r in drive} == {"DRIVE"}
    mail_ids = {u["id"] for u in mail_users}
    assert {r["user"]["id"] for r in drive} <= mail_ids
    calendar_runs = (await worker.execute(h.CLAIM, limit=10, services=["CALENDAR"]))[
        "claimDueSyncRuns"
    ]
    assert {r["user"]["id"] for r in calendar_runs} == {u["id"] for u in cal_users}
    assert {r["service"] for r in calendar_runs} == {"CALENDAR"}
    rest = (await worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"]
    assert {r["user"]["id"] for r in rest} == mail_ids - {r["user"]["id"] for r in drive}
    assert {r["service"] for r in rest} == {"MAIL"}


async def test_concurrent_claimers_never_get_the_same_user(tenant: Tenant) -> None:
    admin, viewer = tenant.admin, tenant.viewer
    policy = await h.create_policy(admin, "Busy")
    users = await h.add_users(admin, [f"busy{i:02}@k.example" for i in range(40)], policy["id"])
    workers = [tenant.worker] + [tenant.api("worker") for _ in range(3)]

    async def claim(i: int) -> list[dict]:
        api = workers[i % len(workers)]
        return (await api.execute(h.CLAIM, limit=7))["claimDueSyncRuns"]

    results = await asyncio.gather(*(claim(i) for i in range(8)))
    claimed = [run["user"]["id"] for runs in results for run in runs]
    assert len(claimed) == len(set(claimed))  # disjoint
    runs = {run["id"] for result in results for run in result}
    assert len(runs) == len(claimed)
    rest = (await tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"]
    claimed += [run["user"]["id"] for run in rest]
    assert sorted(claimed) == sorted(u["id"] for u in users)
    for found in await h.all_users(viewer):
        assert found["status"] == "IN_PROGRESS"
        history = (await viewer.execute(h.RUNS, id=found["id"]))["syncUser"]["runs"]
        assert history["totalCount"] == 1
    assert (await h.metrics(viewer))["syncsInProgress"] == 40


async def test_request_sync_needs_an_active_policy(tenant: Tenant) -> None:
    admin = tenant.admin
    paused = await h.create_policy(admin, "Paused", active=False)
    (loose,) = await h.add_users(admin, ["loose@r.example"])
    (idle,) = await h.add_users(admin, ["idle@r.example"], paused["id"])
    for user_id in (loose["id"], idle["id"]):
        before = await h.user(tenant.viewer, user_id)
        code = await tenant.operator.error_code(h.REQUEST_SYNC, id=user_id)
        assert code == "CONFLICT"
        assert await h.user(tenant.viewer, user_id) == before
    assert (await tenant.worker.execute(h.CLAIM, limit=10))["claimDueSyncRuns"] == []
