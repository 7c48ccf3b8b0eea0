"""SyncUserFilter.errorCode: FAILED users whose most recent finished run failed with that code,
combined with every other filter, in both orders, paged both ways, with an exact totalCount."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.api_tests import helpers as h
from tests.conftest import Tenant

CODES = ("ERR_AUTH_EXPIRED", "ERR_QUOTA_EXCEEDED", "ERR_THROTTLED")
PAGE = """query($filter: SyncUserFilter, $order: SyncUserOrder, $first: Int, $after: String,
  $last: Int, $before: String) {
  syncUsers(filter: $filter, orderBy: $order, first: $first, after: $after, last: $last,
            before: $before) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { node { id } } } }"""


@pytest.fixture(scope="module")
async def world(module_tenant: Tenant) -> dict[str, Any]:
    admin, worker = module_tenant.admin, module_tenant.worker
    policies = [(await h.create_policy(admin, f"p{k}"))["id"] for k in range(2)]
    emails = [f"{name}{k}@src.example" for k in range(12) for name in ("anna", "omar")]
    users = await h.add_users(admin, emails[:16], policies[0])
    users += await h.add_users(admin, emails[16:], policies[1])
    ids = [u["id"] for u in users]
    # Two rounds, so some users failed before and recovered, or failed with another code.
    running: set[str] = set()
    for round_ in range(2):
        idle = [i for i in ids if i not in running]
        runs = await h.batch(worker, "startSyncRun", [{"userId": i} for i in idle])
        finishes = []
        for k, (user_id, run) in enumerate(zip(idle, runs, strict=True)):
            pick = (k * 7 + round_ * 3) % 5
            if pick == 4:
                running.add(user_id)
            if pick < 3:
                finishes.append(
                    {"runId": run["id"], "errorCode": CODES[pick], "errorMessage": f"m{k}"}
                )
            elif pick == 3:
                finishes.append({"runId": run["id"]})
        await h.batch(worker, "finishSyncRun", finishes)  # the others stay IN_PROGRESS
    listed = await h.all_users(module_tenant.viewer)
    return {"users": listed, "policies": policies}


def _matches(user: dict[str, Any], filt: dict[str, Any]) -> bool:
    code = filt.get("errorCode")
    if code is not None:
        last = user["lastFinishedRun"] or {}
        if user["status"] != "FAILED" or last.get("errorCode") != code:
            return False
    return h.matches(user, {k: v for k, v in filt.items() if k != "errorCode"})


def _expected(users: list[dict[str, Any]], filt: dict[str, Any], order: str) -> list[str]:
    kept = [u for u in users if _matches(u, filt)]
    return h.expected_ids(kept, {}, order)


def _filters(world: dict[str, Any]) -> list[dict[str, Any]]:
    times = sorted({u["latestSyncAt"] for u in world["users"] if u["latestSyncAt"]})
    middle = times[len(times) // 2]
    found = []
    for code, status, policy, term, (low, high) in itertools.product(
        (CODES[0], CODES[1], "ERR_NONE"),
        (None, "FAILED", "SYNCED"),
        (None, world["policies"][1]),
        (None, "anna", "OMAR1"),
        ((None, None), (middle, None), (None, middle), (times[0], times[-1])),
    ):
        filt: dict[str, Any] = {"errorCode": code}
        for key, value in (
            ("status", status),
            ("policyId", policy),
            ("emailContains", term),
            ("latestSyncFrom", low),
            ("latestSyncTo", high),
        ):
            if value is not None:
                filt[key] = value
        found.append(filt)
    return found


@pytest.mark.parametrize("order", ["EMAIL_ASC", "LATEST_SYNC_DESC"])
async def test_every_combination_is_exact(
    world: dict[str, Any], module_tenant: Tenant, order: str
) -> None:
    viewer = module_tenant.viewer
    assert any(_expected(world["users"], {"errorCode": c}, order) for c in CODES)
    for filt in _filters(world):
        expected = _expected(world["users"], filt, order)
        found: list[str] = []
        after = None
        while True:
            page = (await viewer.execute(PAGE, filter=filt, order=order, first=4, after=after))[
                "syncUsers"
            ]
            assert page["totalCount"] == len(expected), filt
            found += [e["node"]["id"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert found == expected, filt


async def test_pages_backwards(world: dict[str, Any], module_tenant: Tenant) -> None:
    viewer = module_tenant.viewer
    for code in CODES:
        for order in ("EMAIL_ASC", "LATEST_SYNC_DESC"):
            expected = _expected(world["users"], {"errorCode": code}, order)
            found: list[str] = []
            before = None
            while True:
                page = (
                    await viewer.execute(
                        PAGE, filter={"errorCode": code}, order=order, last=3, before=before
                    )
                )["syncUsers"]
                found = [e["node"]["id"] for e in page["edges"]] + found
                if not page["pageInfo"]["hasPreviousPage"]:
                    break
                before = page["pageInfo"]["startCursor"]
            assert found == expected, (code, order)


@pytest.mark.parametrize("code", ["", "   ", "x" * 101])
async def test_bad_error_codes(module_tenant: Tenant, code: str) -> None:
    error = await module_tenant.viewer.error_code(PAGE, filter={"errorCode": code}, first=1)
    assert error == "BAD_USER_INPUT"


async def test_another_tenants_failures_never_count(
    world: dict[str, Any], other_tenant: Tenant
) -> None:
    page = await other_tenant.viewer.execute(PAGE, filter={"errorCode": CODES[0]}, first=10)
    assert page["syncUsers"]["totalCount"] == 0 and page["syncUsers"]["edges"] == []
