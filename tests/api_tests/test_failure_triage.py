"""Failure triage through the API: failureReasons and syncTrends equal a plain-SQL recount
from sync_users and sync_runs after a random sequence of runs (starts, claims, progress,
finishes with and without error codes, recoveries, reassignments); syncTrends' buckets and
bounds; failureReasons' bounds."""

from __future__ import annotations

import asyncio
import random
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError

from app.domain.timeutil import MICROS_PER_HOUR, to_micros
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant
from tests.api_tests.triage_recount import recount
from tests.server import Server, cli

REASONS = """query($first: Int) { failureReasons(first: $first) {
  errorCode sampleMessage userCount lastSeenAt } }"""
TRENDS = """query($since: DateTime!, $until: DateTime, $bucket: TrendBucket) {
  syncTrends(since: $since, until: $until, bucket: $bucket) {
    at changes runsStarted runsSucceeded runsCompletedWithWarning runsFailed } }"""
CODES = {
    "ERR_AUTH_EXPIRED": "Authentication token expired",
    "ERR_QUOTA_EXCEEDED": "Destination mailbox storage quota exceeded",
    "ERR_MAILBOX_NOT_FOUND": "Mailbox not found in the source tenant",
    "ERR_THROTTLED": "Throttled by Microsoft Graph",
}
TREND_KEYS = ("runsStarted", "runsSucceeded", "runsCompletedWithWarning", "runsFailed")


async def _random_runs(tenant: ApiTenant, rng: random.Random, steps: int) -> None:
    admin, worker, operator = tenant.admin, tenant.worker, tenant.operator
    policies = [
        (await h.create_policy(admin, f"p{k}", active=k < 2, interval=15))["id"] for k in range(3)
    ]
    users = await h.add_users(admin, [f"user{k}@src.example" for k in range(16)], policies[0])
    ids = [u["id"] for u in users]
    await admin.execute(h.ASSIGN, ids=ids[8:12], policy=policies[1])
    running: dict[str, dict[str, Any]] = {}  # user id: {run, processed, changes}
    for _ in range(steps):
        user_id = rng.choice(ids)
        roll = rng.random()
        if roll < 0.06:
            await admin.execute(h.ASSIGN, ids=[user_id], policy=rng.choice([None, *policies]))
            continue
        if roll < 0.12:  # "sync now", then a worker claims whatever is due
            with suppress(TransportQueryError):  # no active policy: CONFLICT
                await operator.execute(h.REQUEST_SYNC, id=user_id)
            for run in (await worker.execute(h.CLAIM, limit=3))["claimDueSyncRuns"]:
                running[run["user"]["id"]] = {"run": run["id"], "processed": 0, "changes": 0}
            continue
        state = running.get(user_id)
        if state is None:
            run = await h.start(worker, user_id, total=50)
            running[user_id] = {"run": run["id"], "processed": 0, "changes": 0}
            continue
        if rng.random() < 0.5:
            state["processed"] += rng.randrange(0, 10)
            state["changes"] += rng.randrange(0, 7)
            items = [h.item(f"i{rng.randrange(10**6)}")] if rng.random() < 0.2 else None
            await h.report(worker, state["run"], state["processed"], state["changes"], items=items)
            continue
        del running[user_id]
        ending = rng.random()
        if ending < 0.45:
            code = rng.choice(list(CODES))
            message = CODES[code] if rng.random() < 0.8 else None
            await h.finish(worker, state["run"], code=code, message=message)
        elif ending < 0.6:
            await h.finish(worker, state["run"], items=[h.item(f"w{rng.randrange(10**6)}")])
        else:
            await h.finish(worker, state["run"])


def _micros(value: str) -> int:
    return to_micros(h.when(value))


async def _check_against_recount(
    server: Server, tenant: ApiTenant, *, changes: bool = True
) -> None:
    viewer = tenant.viewer
    expected = await recount(server.database_url, tenant.name)
    assert expected["mismatched_users"] == []
    assert len(expected["reasons"]) >= 2 and expected["changes"] > 0  # the runs did fail
    listed = (await viewer.execute(REASONS, first=100))["failureReasons"]
    found = {
        r["errorCode"]: (r["userCount"], r["sampleMessage"], _micros(r["lastSeenAt"]))
        for r in listed
    }
    assert found == expected["reasons"]
    counts = [r["userCount"] for r in listed]
    assert [(-r["userCount"], r["errorCode"]) for r in listed] == sorted(
        (-r["userCount"], r["errorCode"]) for r in listed
    )
    assert sum(counts) == (await h.metrics(viewer))["failedSyncs"]
    for code, (users, _, _) in expected["reasons"].items():
        page = await viewer.execute(h.SYNC_USERS, filter={"errorCode": code}, first=1)
        assert page["syncUsers"]["totalCount"] == users, code
    hours = expected["hours"]
    first, last = min(hours), max(hours)
    points: list[dict[str, Any]] = []
    for start in range(first, last + 1, 300):  # HOUR windows hold at most 336 buckets
        since = datetime.fromtimestamp(start * 3600, UTC)
        until = datetime.fromtimestamp(min(start + 299, last) * 3600 + 3599, UTC)
        trends = await viewer.execute(TRENDS, since=h.iso(since), until=h.iso(until))
        points += trends["syncTrends"]
    assert [_micros(p["at"]) // MICROS_PER_HOUR for p in points] == list(range(first, last + 1))
    for point in points:
        hour = _micros(point["at"]) // MICROS_PER_HOUR
        assert {k: point[k] for k in TREND_KEYS} == {
            k: hours.get(hour, {}).get(k, 0) for k in TREND_KEYS
        }, hour
    if changes:  # changes as the runs reported them (the seed counts only the last day's)
        assert sum(p["changes"] for p in points) == expected["changes"]
    since = datetime.fromtimestamp(first * 3600, UTC)
    until = datetime.fromtimestamp(last * 3600 + 3599, UTC)
    days = (await viewer.execute(TRENDS, since=h.iso(since), until=h.iso(until), bucket="DAY"))[
        "syncTrends"
    ]
    for key in (*TREND_KEYS, "changes"):
        assert sum(p[key] for p in days) == sum(p[key] for p in points), key


@pytest.mark.parametrize("seed", [1, 2])
async def test_counters_equal_a_recount_after_random_runs(
    server: Server, tenant: ApiTenant, seed: int
) -> None:
    await _random_runs(tenant, random.Random(seed), 160)
    await _check_against_recount(server, tenant)


async def test_the_seed_keeps_the_counters_exact(server: Server, tenant: ApiTenant) -> None:
    """The seed writes statuses and runs in bulk; its failure reasons and trends still equal a
    recount, also once runs go on over the seeded users."""
    cli(server.database_url, "seed", "--tenant", tenant.name, "--users", "400")
    await _check_against_recount(server, tenant, changes=False)
    worker = tenant.worker
    failed = await h.all_users(tenant.viewer, {"status": "FAILED"})
    runs = await h.batch(worker, "startSyncRun", [{"userId": u["id"]} for u in failed[:10]])
    await h.batch(worker, "finishSyncRun", [{"runId": r["id"]} for r in runs[:5]])
    await _check_against_recount(server, tenant, changes=False)


async def test_failure_reasons_follow_failures_and_recoveries(tenant: ApiTenant) -> None:
    admin, worker, viewer = tenant.admin, tenant.worker, tenant.viewer
    policy = (await h.create_policy(admin, "p"))["id"]
    a, b, c = (
        u["id"]
        for u in await h.add_users(admin, ["a@x.example", "b@x.example", "c@x.example"], policy)
    )
    assert (await viewer.execute(REASONS))["failureReasons"] == []
    for user, code, message in (
        (a, "ERR_B", "first"),
        (b, "ERR_A", "second"),
        (c, "ERR_B", "third"),
    ):
        run = await h.start(worker, user)
        await h.finish(worker, run["id"], code=code, message=message)
    listed = (await viewer.execute(REASONS))["failureReasons"]
    assert [(r["errorCode"], r["userCount"], r["sampleMessage"]) for r in listed] == [
        ("ERR_B", 2, "third"),
        ("ERR_A", 1, "second"),
    ]
    # A new run takes its user out of the reasons at once; a success keeps it out.
    run = await h.start(worker, c)
    listed = (await viewer.execute(REASONS))["failureReasons"]
    assert [(r["errorCode"], r["userCount"]) for r in listed] == [("ERR_A", 1), ("ERR_B", 1)]
    await h.finish(worker, run["id"])
    run = await h.start(worker, b)
    await h.finish(worker, run["id"], code="ERR_B")  # no message: the sample says so
    listed = (await viewer.execute(REASONS, first=1))["failureReasons"]
    assert [(r["errorCode"], r["userCount"], r["sampleMessage"]) for r in listed] == [
        ("ERR_B", 2, "")
    ]
    metrics = await h.metrics(viewer)
    assert metrics["failedSyncs"] == 2


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_failure_reasons_bounds(tenant: ApiTenant, first: int) -> None:
    assert await tenant.viewer.error_code(REASONS, first=first) == "BAD_USER_INPUT"


async def test_trend_windows(tenant: ApiTenant) -> None:
    viewer = tenant.viewer
    now = datetime.now(UTC)
    week = (await viewer.execute(TRENDS, since=h.iso(now - timedelta(days=7))))["syncTrends"]
    assert len(week) == 7 * 24 + 1  # the partial hours at both ends included
    ats = [h.when(p["at"]) for p in week]
    assert ats == sorted(ats) and all(a.minute == a.second == a.microsecond == 0 for a in ats)
    assert ats[-1] <= now < ats[-1] + timedelta(hours=1)
    assert all(p["changes"] == p["runsStarted"] == 0 for p in week)
    start = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    exact = await viewer.execute(
        TRENDS, since=h.iso(start), until=h.iso(start + timedelta(hours=24 * 14 - 1))
    )
    assert len(exact["syncTrends"]) == 24 * 14
    days = await viewer.execute(
        TRENDS, since=h.iso(start), until=h.iso(start + timedelta(days=399)), bucket="DAY"
    )
    assert len(days["syncTrends"]) == 400
    assert h.when(days["syncTrends"][0]["at"]) == datetime(2026, 3, 1, tzinfo=UTC)
    # An offset is honoured: buckets are UTC.
    local = await viewer.execute(
        TRENDS, since="2026-03-01T00:30:00+02:00", until="2026-03-01T01:10:00+02:00"
    )
    assert [p["at"] for p in local["syncTrends"]] == [
        "2026-02-28T22:00:00Z",
        "2026-02-28T23:00:00Z",
    ]
    for since, until, bucket in (
        (start, start - timedelta(microseconds=1), "HOUR"),
        (start, start + timedelta(hours=24 * 14), "HOUR"),
        (start, start + timedelta(days=400), "DAY"),
        (now + timedelta(hours=2), None, "HOUR"),
    ):
        variables: dict[str, Any] = {"since": h.iso(since), "bucket": bucket}
        if until is not None:
            variables["until"] = h.iso(until)
        assert await viewer.error_code(TRENDS, **variables) == "BAD_USER_INPUT", variables
    assert await viewer.error_code(TRENDS, since="yesterday") == "BAD_USER_INPUT"


async def test_concurrent_runs_keep_the_counters_exact(server: Server, tenant: ApiTenant) -> None:
    """Many workers at once (PostgreSQL: concurrent transactions on the same counter rows):
    no deadlock, no lost count."""
    admin, worker = tenant.admin, tenant.worker
    policy = (await h.create_policy(admin, "p"))["id"]
    ids = [
        u["id"] for u in await h.add_users(admin, [f"c{k}@x.example" for k in range(24)], policy)
    ]
    codes = list(CODES)

    async def runs(k: int, user_id: str) -> None:
        for round_ in range(4):
            run = await h.start(worker, user_id)
            await h.report(worker, run["id"], 5, 2 + k)
            if (k + round_) % 3:
                code = codes[(k * 5 + round_) % len(codes)]
                await h.finish(worker, run["id"], code=code, message=f"{code} {k}")
            else:
                await h.finish(worker, run["id"])

    await asyncio.gather(*(runs(k, user_id) for k, user_id in enumerate(ids)))
    await _check_against_recount(server, tenant)
