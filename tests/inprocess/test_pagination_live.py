"""Keyset pages stay right while rows change between page fetches: no row that existed
throughout is skipped or repeated, and rows added behind the cursor are never seen."""

from __future__ import annotations

from typing import Any

from tests.api_tests import helpers as h
from tests.conftest import Tenant


async def _setup(tenant: Tenant, count: int = 40) -> tuple[str, list[dict[str, Any]]]:
    policy = await h.create_policy(tenant.admin, "Live")
    emails = [f"m{i:03}@p.example" for i in range(0, 2 * count, 2)]  # even numbers
    users = await h.add_users(tenant.admin, emails, policy["id"])
    return policy["id"], users


async def _fetch(tenant: Tenant, **args: Any) -> dict[str, Any]:
    return (await tenant.viewer.execute(h.SYNC_USERS, **args))["syncUsers"]


async def test_forward_pages_while_rows_are_added_and_change(tenant: Tenant) -> None:
    policy, users = await _setup(tenant)
    worker = tenant.worker
    by_email = {u["email"]: u for u in users}
    runs: dict[str, str] = {}
    seen: list[dict[str, Any]] = []
    added: dict[str, str] = {}  # email -> the last email read when it was added
    after = None
    step = 0
    while True:
        found = await _fetch(tenant, first=6, after=after)
        assert found["totalCount"] == len(users) + len(added)
        seen += [e["node"] for e in found["edges"]]
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
        last = seen[-1]["email"]
        # Between pages: users appear on both sides of the cursor, statuses and policies change.
        fresh = [f"m{n:03}@p.example" for n in (2 * step + 1, 2 * step + 41, 2 * step + 61)]
        fresh = [e for e in fresh if e not in added and e not in by_email]
        await h.add_users(tenant.admin, fresh, policy)
        added.update((e, last) for e in fresh)
        targets = [u for u in users if u["email"] > last][:3] + [u for u in users][step : step + 2]
        for u in targets:
            if u["id"] in runs:
                await h.finish(worker, runs.pop(u["id"]), code="ERR_X")
            else:
                runs[u["id"]] = (await h.start(worker, u["id"]))["id"]
        await tenant.admin.execute(h.ASSIGN, ids=[targets[0]["id"]], policy=None)
        step += 1
    assert step >= 6
    emails = [n["email"] for n in seen]
    assert len(emails) == len(set(emails))  # nothing twice
    assert set(by_email) <= set(emails)  # nothing that existed throughout skipped
    for email, cursor in added.items():
        assert (email in emails) == (email > cursor), email  # behind the cursor: not seen
    assert emails == sorted(emails)


async def test_backward_pages_while_rows_are_added_and_change(tenant: Tenant) -> None:
    policy, users = await _setup(tenant)
    worker = tenant.worker
    by_email = {u["email"]: u for u in users}
    seen: list[dict[str, Any]] = []
    added: dict[str, str] = {}
    before = None
    step = 0
    while True:
        found = await _fetch(tenant, last=7, before=before)
        assert found["totalCount"] == len(users) + len(added)
        seen = [e["node"] for e in found["edges"]] + seen
        if not found["pageInfo"]["hasPreviousPage"]:
            break
        before = found["pageInfo"]["startCursor"]
        first = seen[0]["email"]
        fresh = [f"m{n:03}@p.example" for n in (79 - 2 * step, 11 + 2 * step, 1 + 2 * step)]
        fresh = [e for e in fresh if e not in added and e not in by_email]
        await h.add_users(tenant.admin, fresh, policy)
        added.update((e, first) for e in fresh)
        for u in [u for u in users if u["email"] < first][-2:]:
            run = await h.start(worker, u["id"])
            await h.finish(worker, run["id"], items=[h.item("x")])
        step += 1
    emails = [n["email"] for n in seen]
    assert len(emails) == len(set(emails))
    assert set(by_email) <= set(emails)
    for email, cursor in added.items():
        assert (email in emails) == (email < cursor), email
    assert emails == sorted(emails)


async def test_latest_sync_order_while_statuses_change(tenant: Tenant) -> None:
    policy, users = await _setup(tenant, 36)
    worker = tenant.worker
    # Everyone but six ran once (a varied order); runs of some are still running.
    runs = await h.drive(worker, [(u["id"], "IN_PROGRESS") for u in users[6:][::-1]])
    running = [runs[u["id"]]["id"] for u in users[6:]]
    original = {u["id"] for u in users}
    seen: list[str] = []
    after = None
    while True:
        found = await _fetch(tenant, order="LATEST_SYNC_DESC", first=5, after=after)
        seen += [e["node"]["id"] for e in found["edges"]]
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
        # Finishing runs changes statuses but not latestSyncAt; new users are never-synced.
        for run_id in running[:4]:
            await h.finish(worker, run_id, code="ERR_Y")
        running = running[4:]
        await h.add_users(tenant.admin, [f"new{len(seen)}@p.example"], policy)
    assert len(seen) == len(set(seen))
    assert original <= set(seen)


async def test_a_filtered_list_while_rows_leave_and_join_it(tenant: Tenant) -> None:
    _, users = await _setup(tenant, 30)
    worker = tenant.worker
    runs = await h.drive(worker, [(u["id"], "IN_PROGRESS") for u in users])
    staying = {u["id"] for u in users[::3]}  # running throughout
    leaving = [u for u in users if u["id"] not in staying]
    filt = {"status": "IN_PROGRESS"}
    seen: list[str] = []
    after = None
    while True:
        found = await _fetch(tenant, filter=filt, first=4, after=after)
        seen += [e["node"]["id"] for e in found["edges"]]
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
        for u in leaving[:3]:
            await h.finish(worker, runs[u["id"]]["id"])
        leaving = leaving[3:]
        current = await _fetch(tenant, filter=filt, first=1)
        assert current["totalCount"] == len(staying) + len(leaving)
    assert len(seen) == len(set(seen))
    assert staying <= set(seen)
