"""requestSyncs ("retry all"): every matching user with an active policy and no run running is
due at once, as requestSync makes one; the others are counted as skipped. OPERATOR only, one
tenant only, and claimDueSyncRuns then starts exactly those users."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, select

from app.domain.ids import decode_id
from app.domain.timeutil import now_micros
from app.lifecycle import transitions
from app.store.models import Tenant
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant
from tests.server import opened
from tests.subscriptions.support import USER_UPDATES, Stream, live_user_stream

REQUEST = """mutation($filter: SyncUserFilter!) { requestSyncs(filter: $filter) {
  requested skipped } }"""
AUDIT = """{ auditEvents(filter: {action: "sync.request_bulk"}) { edges { node {
  action actorRole summary } } } }"""


async def _setup(tenant: ApiTenant) -> dict[str, list[str]]:
    """Daily policies, so users that just ran are not due: idle (ran, 3 of them FAILED),
    running, of an inactive policy, without a policy."""
    admin, worker = tenant.admin, tenant.worker
    active = (await h.create_policy(admin, "daily", interval=1440))["id"]
    paused = (await h.create_policy(admin, "paused", active=False, interval=1440))["id"]
    idle = [
        u["id"] for u in await h.add_users(admin, [f"idle{k}@x.example" for k in range(6)], active)
    ]
    running = [
        u["id"] for u in await h.add_users(admin, ["run0@x.example", "run1@x.example"], active)
    ]
    inactive = [
        u["id"] for u in await h.add_users(admin, ["off0@x.example", "off1@x.example"], paused)
    ]
    loose = [u["id"] for u in await h.add_users(admin, ["none0@x.example", "none1@x.example"])]
    await h.drive(
        worker,
        [(u, "FAILED" if k < 3 else "SYNCED") for k, u in enumerate(idle)]
        + [(u, "SYNCED") for u in inactive],
    )
    await h.batch(worker, "startSyncRun", [{"userId": u} for u in running])
    assert (await worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"] == []
    return {"idle": idle, "running": running, "inactive": inactive, "loose": loose}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _next_scheduled(tenant: ApiTenant) -> dict[str, str]:
    """email -> next_scheduled_sync_at of the tenant's CSV export."""
    response = httpx.get(
        f"{tenant.server.url}/export/sync-users.csv",
        headers={"Authorization": f"Bearer {tenant.viewer.token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.content.decode(), newline="")))
    return {row["email"]: row["next_scheduled_sync_at"] for row in rows}


def _claimed(runs: list[dict[str, Any]]) -> set[str]:
    return {run["user"]["id"] for run in runs}


async def test_everything_matching_becomes_due(tenant: ApiTenant, other_tenant: ApiTenant) -> None:
    users = await _setup(tenant)
    others = await _setup(other_tenant)
    before = {u: await h.user(tenant.viewer, u) for u in users["idle"]}
    exported = _next_scheduled(tenant)
    started = datetime.now(UTC)
    result = (await tenant.operator.execute(REQUEST, filter={}))["requestSyncs"]
    assert result == {"requested": 6, "skipped": 6}
    for user_id in users["idle"]:
        found = await h.user(tenant.viewer, user_id)
        assert found["version"] == before[user_id]["version"] + 1
        # Daily: due tomorrow before, due now (as read) after.
        assert _time(before[user_id]["nextScheduledSyncAt"]) > started + timedelta(hours=23)
        assert started <= _time(found["nextScheduledSyncAt"]) <= datetime.now(UTC)
    # The CSV export says the same: the idle users are due now, the others as before.
    now = _next_scheduled(tenant)
    idle = {(await h.user(tenant.viewer, u))["email"] for u in users["idle"]}
    assert {e for e in now if now[e] != exported[e]} == idle
    assert all(started <= _time(now[e]) <= datetime.now(UTC) for e in idle)
    claimed = (await tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"]
    assert _claimed(claimed) == set(users["idle"])
    # The other tenant's users were left alone.
    assert (await other_tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"] == []
    assert others  # set up like this tenant's


async def test_a_filter_selects_who_is_retried(tenant: ApiTenant) -> None:
    users = await _setup(tenant)
    result = await tenant.operator.execute(REQUEST, filter={"errorCode": "ERR_TOKEN_001"})
    assert result["requestSyncs"] == {"requested": 3, "skipped": 0}
    claimed = (await tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"]
    assert _claimed(claimed) == set(users["idle"][:3])
    # Now running: a second "retry all" of the same filter finds none of them FAILED.
    again = await tenant.operator.execute(REQUEST, filter={"errorCode": "ERR_TOKEN_001"})
    assert again["requestSyncs"] == {"requested": 0, "skipped": 0}
    some = await tenant.operator.execute(REQUEST, filter={"emailContains": "run"})
    assert some["requestSyncs"] == {"requested": 0, "skipped": 2}


@pytest.mark.parametrize("role", ["viewer", "worker"])
async def test_only_operators(tenant: ApiTenant, role: str) -> None:
    await _setup(tenant)
    assert await tenant.api(role).error_code(REQUEST, filter={}) == "FORBIDDEN"
    assert (await tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"] == []


async def test_admins_may_and_bad_filters_are_refused(tenant: ApiTenant) -> None:
    await _setup(tenant)
    bad = await tenant.operator.error_code(REQUEST, filter={"status": "FAILED", "policyId": "x"})
    assert bad == "BAD_USER_INPUT"
    result = await tenant.admin.execute(REQUEST, filter={"status": "FAILED"})
    assert result["requestSyncs"] == {"requested": 3, "skipped": 0}
    await tenant.operator.execute(REQUEST, filter={"errorCode": "ERR_X", "emailContains": "a"})
    logged = await tenant.admin.execute(AUDIT)
    assert [
        (e["node"]["actorRole"], e["node"]["summary"]) for e in logged["auditEvents"]["edges"]
    ] == [
        (
            "OPERATOR",
            "Requested syncs of 0 users matching emailContains='a', errorCode='ERR_X'; 0 skipped",
        ),
        ("ADMIN", "Requested syncs of 3 users matching status='FAILED'; 0 skipped"),
    ]


async def _synced(tenant: ApiTenant, user_ids: list[str]) -> None:
    """Each user through one run, started and finished by the functions behind startSyncRun and
    finishSyncRun (app.lifecycle.transitions), in one transaction in this process: through the
    API (h.drive) they were 900 transactions, most of this test's time on a loaded
    PostgreSQL, and the rest of the API suite drives those mutations throughout. What this test
    is about, requestSyncs over hundreds of users and the claims after it, goes through the
    API as before."""
    async with opened(tenant.server.database_url) as db:

        def drive(conn: Connection) -> None:
            tenant_id = conn.execute(
                select(Tenant.id).where(Tenant.name == tenant.name)
            ).scalar_one()
            now = now_micros()
            for user_id in user_ids:
                user = transitions.load_user(conn, tenant_id, decode_id(user_id, "SyncUser"))
                started, _ = transitions.start_run(conn, user, now, items_total=10)
                run, user = transitions.load_run(conn, tenant_id, started.id)
                transitions.finish_run(conn, run, user, now)

        await db.run_write(drive)


async def test_hundreds_of_users_are_requested_then_claimed_in_batches(tenant: ApiTenant) -> None:
    """450 users fit in requestSyncs' first id range (FIRST_RANGE): the walk over many ranges,
    one transaction each, is tests/triage/test_bulk_requests.py's (small ranges there)."""
    admin, worker = tenant.admin, tenant.worker
    policy = (await h.create_policy(admin, "daily", interval=1440))["id"]
    ids = [
        u["id"] for u in await h.add_users(admin, [f"u{k}@x.example" for k in range(450)], policy)
    ]
    await _synced(tenant, ids)
    result = await tenant.operator.execute(REQUEST, filter={"emailContains": "u"})
    assert result["requestSyncs"] == {"requested": 450, "skipped": 0}
    claimed: set[str] = set()
    for _ in range(5):
        claimed |= _claimed((await worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"])
    assert claimed == set(ids)


async def test_each_requested_user_is_announced(tenant: ApiTenant) -> None:
    users = await _setup(tenant)
    idle = users["idle"]
    async with tenant.viewer.websocket() as session, Stream(session, USER_UPDATES, ids=idle) as s:
        await live_user_stream(s, tenant, idle[0])
        versions = {u: (await h.user(tenant.viewer, u))["version"] for u in idle}
        await tenant.operator.execute(REQUEST, filter={"status": "FAILED"})
        announced: dict[str, int] = {}

        def all_in(item: dict[str, Any]) -> bool:
            user = item["syncUserUpdated"]
            announced[user["id"]] = user["version"]
            return len(announced) == 3

        await s.until(all_in)
    assert announced == {u: versions[u] + 1 for u in idle[:3]}  # the FAILED ones
