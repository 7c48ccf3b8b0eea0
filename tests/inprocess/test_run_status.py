"""A user's status, latestSyncAt, runs and unresolvedFailureCount follow its runs (the contract's
semantics); reports are cumulative, so stale, repeated and late reports change nothing."""

from __future__ import annotations

from tests.api_tests import helpers as h
from tests.conftest import Tenant


async def _one_user(tenant: Tenant, email: str = "ada@src.example") -> dict:
    policy = await h.create_policy(tenant.admin, "Hourly")
    (added,) = await h.add_users(tenant.admin, [email], policy["id"])
    return added


async def test_status_follows_the_runs(tenant: Tenant) -> None:
    worker, viewer = tenant.worker, tenant.viewer
    added = await _one_user(tenant)
    assert added["status"] == "NEVER_SYNCED"
    assert added["latestSyncAt"] is None
    assert added["currentRun"] is None and added["lastFinishedRun"] is None
    history = (await viewer.execute(h.RUNS, id=added["id"]))["syncUser"]["runs"]
    assert history["totalCount"] == 0 and history["edges"] == []

    first = await h.start(worker, added["id"], total=4)
    assert (first["state"], first["kind"], first["service"]) == ("RUNNING", "INITIAL", "MAIL")
    assert first["finishedAt"] is None and first["user"] == {"id": added["id"]}
    assert (first["itemsTotal"], first["itemsProcessed"], first["progress"]) == (4, 0, 0.0)
    now = await h.user(viewer, added["id"])
    assert now["status"] == "IN_PROGRESS"
    assert now["latestSyncAt"] == first["startedAt"]
    assert now["currentRun"]["id"] == first["id"] and now["lastFinishedRun"] is None

    done = await h.finish(worker, first["id"])
    assert done["state"] == "SUCCEEDED" and done["errorCode"] is None
    assert done["startedAt"] == first["startedAt"]
    duration = (h.when(done["finishedAt"]) - h.when(done["startedAt"])).total_seconds()
    assert done["durationSeconds"] == duration
    now = await h.user(viewer, added["id"])
    assert now["status"] == "SYNCED" and now["currentRun"] is None
    assert now["lastFinishedRun"]["id"] == first["id"]
    assert now["latestSyncAt"] == first["startedAt"]

    # A second run: DELTA, and IN_PROGRESS again although the last finished run succeeded.
    # service is nullable in the contract: null is the default, MAIL (kind: from the history).
    second = (await worker.execute(h.START, user=added["id"], service=None, kind=None))[
        "startSyncRun"
    ]
    assert (second["kind"], second["service"]) == ("DELTA", "MAIL")
    assert second["itemsTotal"] is None
    assert second["progress"] is None  # unknown total
    now = await h.user(viewer, added["id"])
    assert now["status"] == "IN_PROGRESS" and now["latestSyncAt"] == second["startedAt"]
    assert now["lastFinishedRun"]["id"] == first["id"]
    await h.report(worker, second["id"], 3, 1, total=12)
    warned = await h.finish(worker, second["id"], items=[h.item("m1"), h.item("m2")])
    assert warned["state"] == "COMPLETED_WITH_WARNING" and warned["itemsFailed"] == 2
    assert warned["progress"] == 0.25
    now = await h.user(viewer, added["id"])
    assert now["status"] == "COMPLETED_WITH_WARNING"
    assert now["latestSyncAt"] == second["startedAt"]

    third = await h.start(worker, added["id"], kind="INITIAL", service="DRIVE")
    assert (third["kind"], third["service"]) == ("INITIAL", "DRIVE")
    failed = await h.finish(worker, third["id"], code="ERR_TOKEN_001", message="Token expired")
    assert (failed["state"], failed["errorCode"], failed["errorMessage"]) == (
        "FAILED",
        "ERR_TOKEN_001",
        "Token expired",
    )
    now = await h.user(viewer, added["id"])
    assert now["status"] == "FAILED" and now["lastFinishedRun"]["errorCode"] == "ERR_TOKEN_001"
    assert now["latestSyncAt"] == third["startedAt"]

    history = (await viewer.execute(h.RUNS, id=added["id"]))["syncUser"]["runs"]
    assert history["totalCount"] == 3
    assert [e["node"]["id"] for e in history["edges"]] == [third["id"], second["id"], first["id"]]
    assert [e["node"]["state"] for e in history["edges"]] == [
        "FAILED",
        "COMPLETED_WITH_WARNING",
        "SUCCEEDED",
    ]
    # Runs are nodes too, and their failed items are exact.
    found = await h.run(viewer, second["id"])
    assert found["failedItems"]["totalCount"] == 2
    items = [e["node"] for e in found["failedItems"]["edges"]]
    assert [(i["itemId"], i["itemType"], i["errorCode"], i["errorMessage"]) for i in items] == [
        ("m1", "message", "ERR_ITEM_SIZE", "m1 is too large"),
        ("m2", "message", "ERR_ITEM_SIZE", "m2 is too large"),
    ]
    node = (
        await viewer.execute(
            "query($id: ID!) { node(id: $id) { id ... on SyncRun { state } } }", id=third["id"]
        )
    )["node"]
    assert node == {"id": third["id"], "state": "FAILED"}


async def test_failed_items_reported_during_the_run_make_a_warning(tenant: Tenant) -> None:
    added = await _one_user(tenant)
    run = await h.start(tenant.worker, added["id"])
    await h.report(tenant.worker, run["id"], 1, 0, items=[h.item("early")])
    done = await h.finish(tenant.worker, run["id"])
    assert done["state"] == "COMPLETED_WITH_WARNING" and done["itemsFailed"] == 1
    assert (await h.user(tenant.viewer, added["id"]))["status"] == "COMPLETED_WITH_WARNING"


async def test_an_error_code_fails_the_run_even_with_failed_items(tenant: Tenant) -> None:
    added = await _one_user(tenant)
    run = await h.start(tenant.worker, added["id"])
    done = await h.finish(tenant.worker, run["id"], code="ERR_RATE_429", items=[h.item("x")])
    assert (done["state"], done["errorCode"], done["errorMessage"]) == (
        "FAILED",
        "ERR_RATE_429",
        None,
    )
    assert done["itemsFailed"] == 1
    assert (await h.user(tenant.viewer, added["id"]))["status"] == "FAILED"


async def test_unresolved_failures_count_failed_runs_since_the_last_completed_one(
    tenant: Tenant,
) -> None:
    worker = tenant.worker
    added = await _one_user(tenant)

    async def one_run(**finish: object) -> int:
        run = await h.start(worker, added["id"])
        before_finish = await h.user(tenant.viewer, added["id"])
        await h.finish(worker, run["id"], **finish)
        after = await h.user(tenant.viewer, added["id"])
        # A run that is running changes nothing about the count.
        assert before_finish["unresolvedFailureCount"] == (counts[-1] if counts else 0)
        return after["unresolvedFailureCount"]

    counts: list[int] = []
    fail = {"code": "ERR_TOKEN_001"}
    for finish in (fail, fail, fail, {"items": [h.item("a")]}, fail, {}, {}, fail):
        counts.append(await one_run(**finish))
    assert counts == [1, 2, 3, 0, 1, 0, 0, 1]


async def test_reports_are_cumulative_stale_and_repeated_ones_change_nothing(
    tenant: Tenant,
) -> None:
    worker, viewer = tenant.worker, tenant.viewer
    added = await _one_user(tenant)
    run = await h.start(worker, added["id"], total=100)
    version = (await h.user(viewer, added["id"]))["version"]

    first = await h.report(worker, run["id"], 10, 5, items=[h.item("a"), h.item("b")])
    assert (first["itemsProcessed"], first["changes"], first["itemsFailed"]) == (10, 5, 2)
    assert first["progress"] == 0.1
    after_first = await h.user(viewer, added["id"])
    assert after_first["version"] > version
    assert (await h.metrics(viewer))["changesLast24h"] == 5

    # The same report again (a retry) and stale ones (a counter went down): accepted, ignored.
    for processed, changes, items in (
        (10, 5, [h.item("a"), h.item("b")]),
        (9, 5, [h.item("c")]),
        (10, 4, None),
        (0, 0, None),
    ):
        same = await h.report(worker, run["id"], processed, changes, items=items)
        assert (same["itemsProcessed"], same["changes"], same["itemsFailed"]) == (10, 5, 2)
        assert same["state"] == "RUNNING"
    assert (await h.user(viewer, added["id"]))["version"] == after_first["version"]
    assert (await h.metrics(viewer))["changesLast24h"] == 5
    assert (await h.run(viewer, run["id"]))["failedItems"]["totalCount"] == 2

    # Growth counts once more: only the difference; a known item is not recorded twice.
    grown = await h.report(worker, run["id"], 40, 12, items=[h.item("b"), h.item("c")])
    assert (grown["itemsProcessed"], grown["changes"], grown["itemsFailed"]) == (40, 12, 3)
    assert (await h.metrics(viewer))["changesLast24h"] == 12
    # Finishing with items already reported does not duplicate them either.
    done = await h.finish(worker, run["id"], items=[h.item("a"), h.item("d"), h.item("d")])
    assert done["itemsFailed"] == 4 and done["state"] == "COMPLETED_WITH_WARNING"
    found = await h.run(viewer, run["id"])
    assert [e["node"]["itemId"] for e in found["failedItems"]["edges"]] == ["a", "b", "c", "d"]
    assert found["failedItems"]["totalCount"] == 4


async def test_a_late_report_after_the_finish_is_ignored(tenant: Tenant) -> None:
    worker, viewer = tenant.worker, tenant.viewer
    added = await _one_user(tenant)
    run = await h.start(worker, added["id"], total=10)
    await h.report(worker, run["id"], 4, 2)
    await h.finish(worker, run["id"])
    before = await h.user(viewer, added["id"])
    changes = (await h.metrics(viewer))["changesLast24h"]

    late = await h.report(worker, run["id"], 10, 9, total=20, items=[h.item("late")])
    assert (late["state"], late["itemsProcessed"], late["changes"], late["itemsTotal"]) == (
        "SUCCEEDED",
        4,
        2,
        10,
    )
    assert late["itemsFailed"] == 0
    after = await h.user(viewer, added["id"])
    assert after == {**before, "nextScheduledSyncAt": after["nextScheduledSyncAt"]}
    assert after["status"] == "SYNCED"
    assert (await h.metrics(viewer))["changesLast24h"] == changes == 2
    assert (await h.run(viewer, run["id"]))["failedItems"]["totalCount"] == 0


async def test_version_grows_with_every_change_and_only_then(tenant: Tenant) -> None:
    admin, worker, viewer = tenant.admin, tenant.worker, tenant.viewer
    policy = await h.create_policy(admin, "Hourly")
    other = await h.create_policy(admin, "Daily", interval=1440)
    (added,) = await h.add_users(admin, ["ver@src.example"], policy["id"])
    versions = [added["version"]]

    async def changed(expect_growth: bool = True) -> None:
        version = (await h.user(viewer, added["id"]))["version"]
        if expect_growth:
            assert version > versions[-1]
        else:
            assert version == versions[-1]
        versions.append(version)

    run = await h.start(worker, added["id"])
    await changed()
    await h.report(worker, run["id"], 5, 1)
    await changed()
    await h.report(worker, run["id"], 5, 1)  # repeated
    await changed(False)
    await h.report(worker, run["id"], 5, 0)  # stale
    await changed(False)
    await h.report(worker, run["id"], 5, 1, total=50)  # the total became known
    await changed()
    await h.finish(worker, run["id"])
    await changed()
    await h.report(worker, run["id"], 9, 9)  # late
    await changed(False)
    await tenant.operator.execute(h.REQUEST_SYNC, id=added["id"])
    await changed()
    await admin.execute(h.ASSIGN, ids=[added["id"]], policy=other["id"])
    await changed()
    await admin.execute(h.ASSIGN, ids=[added["id"]], policy=other["id"])  # no change
    await changed(False)
    await admin.execute(h.SET_ACTIVE, id=other["id"], active=False)
    await changed()
    await admin.execute(h.SET_ACTIVE, id=other["id"], active=False)  # no change
    await changed(False)
    await admin.execute(
        h.UPDATE_POLICY,
        id=other["id"],
        input={"name": "Daily", "active": False, "syncIntervalMinutes": 720},
    )
    await changed()
    await admin.execute(h.ASSIGN, ids=[added["id"]], policy=None)
    await changed()
    # Changes to a policy the user left do not touch it.
    await admin.execute(h.SET_ACTIVE, id=other["id"], active=True)
    await changed(False)
    await admin.execute(h.ASSIGN, ids=[added["id"]], policy=policy["id"])
    await changed()
    failing = await h.start(worker, added["id"])
    await changed()
    await h.finish(worker, failing["id"], code="ERR_X")
    await changed()
    assert versions[0] == 1
