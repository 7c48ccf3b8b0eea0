"""Concurrent callers: writes to the same rows serialize into one success and CONFLICTs (never
a server error), concurrent claimers never share a user, and the counters stay exact."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from gql.transport.exceptions import TransportQueryError

from tests.api import Api
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant
from tests.inprocess.test_metrics import check_invariants


async def _outcome(api: Api, document: str, **variables: Any) -> str:
    try:
        await api.execute(document, **variables)
    except TransportQueryError as error:
        return str((error.errors or [{}])[0].get("extensions", {}).get("code"))
    return "OK"


async def _all(calls: list[Any]) -> Counter[str]:
    return Counter(await asyncio.gather(*calls))


def _apis(tenant: ApiTenant, role: str, count: int) -> list[Api]:
    """Separate clients (connections) of one role."""
    return [tenant.api(role)] + [
        Api(tenant.server.graphql_url, tenant.server.ws_url, tenant.api(role).token)
        for _ in range(count - 1)
    ]


async def test_concurrent_claims_across_policies_and_statuses(tenant: ApiTenant) -> None:
    admin = tenant.admin
    one = (await h.create_policy(admin, "One"))["id"]
    two = (await h.create_policy(admin, "Two"))["id"]
    # Due order P1 P2 P2 P1 P1 P2 ...: two claimers of two users each meet the policies (and
    # the users' old statuses) in opposite orders.
    users = [
        {
            "email": f"c{i:02}@x.example",
            "destinationEmail": f"c{i:02}@y.example",
            "policyId": one if i % 4 in (0, 3) else two,
        }
        for i in range(40)
    ]
    ids = [u["id"] for u in (await admin.execute(h.ADD_USERS, users=users))["addSyncUsers"]]
    statuses = ("FAILED", "SYNCED", "COMPLETED_WITH_WARNING", "NEVER_SYNCED", "SYNCED")
    await h.drive(tenant.worker, [(u, statuses[i % 5]) for i, u in enumerate(ids)])
    await h.batch(tenant.operator, "requestSync", [{"userId": u} for u in ids])  # due in order
    workers = _apis(tenant, "worker", 4)

    async def claim(i: int) -> list[str]:
        data = await workers[i % len(workers)].execute(h.CLAIM, limit=2)
        return [run["user"]["id"] for run in data["claimDueSyncRuns"]]

    results = await asyncio.gather(*(claim(i) for i in range(20)), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    claimed = [u for result in results for u in result]  # type: ignore[union-attr]
    assert len(claimed) == len(set(claimed))
    rest = (await tenant.worker.execute(h.CLAIM, limit=100))["claimDueSyncRuns"]
    assert sorted(claimed + [r["user"]["id"] for r in rest]) == sorted(ids)
    found = await check_invariants(tenant)
    assert (found["syncsInProgress"], found["failedSyncs"], found["totalUsers"]) == (40, 0, 40)


async def test_concurrent_finishes_and_reports_of_runs(tenant: ApiTenant) -> None:
    admin = tenant.admin
    one = await h.create_policy(admin, "One")
    two = await h.create_policy(admin, "Two")
    users = await h.add_users(admin, [f"f{i}@x.example" for i in range(8)], one["id"])
    users += await h.add_users(admin, [f"g{i}@x.example" for i in range(8)], two["id"])
    runs = await h.drive(tenant.worker, [(u["id"], "IN_PROGRESS") for u in users])
    workers = _apis(tenant, "worker", 4)
    run_ids = [runs[u["id"]]["id"] for u in users]

    # Reports of one run arriving out of order: the highest counters win, counted once.
    reports = [
        _outcome(workers[n % 4], h.REPORT, run=run_ids[0], processed=n, changes=n)
        for n in (3, 9, 1, 7, 5, 2, 8)
    ]
    assert await _all(reports) == Counter({"OK": 7})
    assert (await h.run(tenant.viewer, run_ids[0]))["changes"] == 9

    # The same run finished twice at once: one finish, one CONFLICT.
    outcomes = await _all(
        [
            _outcome(workers[i], h.FINISH, run=run_ids[1], code="ERR_A" if i else None)
            for i in range(2)
        ]
    )
    assert outcomes == Counter({"OK": 1, "CONFLICT": 1})

    # All the other runs finish at once, interleaving both policies' counters.
    calls = []
    for i, run_id in enumerate(run_ids[2:]):
        kind = ("code", "ERR_B") if i % 2 else ("items", [h.item("x")])
        calls.append(_outcome(workers[i % 4], h.FINISH, run=run_id, **dict([kind])))
    assert await _all(calls) == Counter({"OK": len(run_ids) - 2})
    found = await check_invariants(tenant)
    twice = (await h.run(tenant.viewer, run_ids[1]))["state"]
    assert twice in ("SUCCEEDED", "FAILED")
    assert (found["syncsInProgress"], found["changesLast24h"]) == (1, 9)
    assert found["failedSyncs"] == 7 + (twice == "FAILED")


async def test_concurrent_starts_of_one_user(tenant: ApiTenant) -> None:
    policy = await h.create_policy(tenant.admin, "One")
    (user,) = await h.add_users(tenant.admin, ["s@x.example"], policy["id"])
    workers = _apis(tenant, "worker", 5)
    outcomes = await _all([_outcome(w, h.START, user=user["id"]) for w in workers])
    assert outcomes == Counter({"OK": 1, "CONFLICT": 4})
    history = (await tenant.viewer.execute(h.RUNS, id=user["id"]))["syncUser"]["runs"]
    assert history["totalCount"] == 1
    assert (await h.metrics(tenant.viewer))["syncsInProgress"] == 1


async def test_concurrent_adds_of_one_email_and_policies_of_one_name(tenant: ApiTenant) -> None:
    admins = _apis(tenant, "admin", 5)
    user = [{"email": "dup@x.example", "destinationEmail": "dup@y.example"}]
    outcomes = await _all([_outcome(a, h.ADD_USERS, users=user) for a in admins])
    assert outcomes == Counter({"OK": 1, "CONFLICT": 4})
    policy = {"name": "Same", "syncIntervalMinutes": 60}
    outcomes = await _all([_outcome(a, h.CREATE_POLICY, input=policy) for a in admins])
    assert outcomes == Counter({"OK": 1, "CONFLICT": 4})
    assert [u["email"] for u in await h.all_users(tenant.viewer)] == ["dup@x.example"]
    assert [p["name"] for p in await h.all_policies(tenant.viewer)] == ["Same"]
    await check_invariants(tenant)


async def test_concurrent_assignments_in_opposite_orders(tenant: ApiTenant) -> None:
    admin = tenant.admin
    one = await h.create_policy(admin, "One")
    two = await h.create_policy(admin, "Two")
    users = await h.add_users(admin, [f"a{i:02}@x.example" for i in range(20)])
    ids = [u["id"] for u in users]
    admins = _apis(tenant, "admin", 4)
    calls = [
        _outcome(admins[0], h.ASSIGN, ids=ids, policy=one["id"]),
        _outcome(admins[1], h.ASSIGN, ids=ids[::-1], policy=two["id"]),
        _outcome(admins[2], h.ASSIGN, ids=ids[5:] + ids[:5], policy=one["id"]),
        _outcome(admins[3], h.ASSIGN, ids=ids[10:] + ids[:10], policy=None),
    ]
    assert await _all(calls) == Counter({"OK": 4})
    await check_invariants(tenant)


async def test_administration_beside_run_updates(tenant: ApiTenant) -> None:
    # Two writers (SQLite: the run lifecycle's writer thread and administration's ORM
    # connection) write at once: they queue for the write lock, and none fails or loses a count.
    admin = tenant.admin
    one = (await h.create_policy(admin, "One"))["id"]
    two = (await h.create_policy(admin, "Two"))["id"]
    users = await h.add_users(admin, [f"b{i:02}@x.example" for i in range(12)], one)
    ids = [u["id"] for u in users]
    runs = await h.drive(tenant.worker, [(u, "IN_PROGRESS") for u in ids])
    run_ids = [runs[u]["id"] for u in ids]
    workers = _apis(tenant, "worker", 4)
    admins = _apis(tenant, "admin", 2)
    calls = [
        _outcome(workers[i % 4], h.REPORT, run=run_id, processed=n, changes=n)
        for n in (1, 2, 3)
        for i, run_id in enumerate(run_ids)
    ]
    calls += [_outcome(workers[i % 4], h.FINISH, run=r) for i, r in enumerate(run_ids[:6])]
    calls += [
        _outcome(admins[i % 2], h.ASSIGN, ids=ids[i:] + ids[:i], policy=(one, two)[i % 2])
        for i in range(4)
    ]
    calls += [
        _outcome(
            admins[i % 2],
            h.ADD_USERS,
            users=[{"email": f"n{i}@x.example", "destinationEmail": f"n{i}@y.example"}],
        )
        for i in range(4)
    ]
    calls.insert(
        len(calls) // 2,
        _outcome(admins[0], h.CREATE_POLICY, input={"name": "Three", "syncIntervalMinutes": 60}),
    )
    assert await _all(calls) == Counter({"OK": len(calls)})
    found = await check_invariants(tenant)  # changes as well (a report after a finish is late)
    assert (found["syncsInProgress"], found["totalUsers"]) == (6, 16)
