"""syncUserUpdated over graphql-transport-ws (gql clients): a run's start and finish arrive in
version order, userIds limits the stream, the whole tenant's stream sees everything of it."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant
from tests.subscriptions.support import (
    USER_UPDATES,
    Stream,
    Worker,
    add_users,
    live_user_stream,
    versions,
)


def user(item: dict[str, Any]) -> dict[str, Any]:
    return item["syncUserUpdated"]


async def test_start_progress_finish_arrive_in_version_order(tenant: Tenant) -> None:
    _, (watched, other) = await add_users(tenant, 2)
    worker = Worker(tenant)
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as stream,
    ):
        before = user(await live_user_stream(stream, tenant, watched))
        await worker.run(other)  # not watched: nothing of it arrives
        run_id = await worker.start(watched)
        for processed in range(5, 50, 5):
            await worker.progress(run_id, processed)
        assert await worker.finish(run_id) == "SUCCEEDED"
        items = await stream.until(lambda i: user(i)["status"] != "IN_PROGRESS")

    updates = [user(i) for i in items]
    assert {u["id"] for u in updates} == {watched}
    assert versions(items) == sorted(set(versions(items))), "strictly increasing versions"
    assert updates[0]["version"] == before["version"] + 1
    started, finished = updates[0], updates[-1]
    assert started["status"] == "IN_PROGRESS"
    assert started["currentRun"] == {
        "id": run_id,
        "state": "RUNNING",
        "itemsProcessed": 0,
        "itemsTotal": 100,
    }
    assert finished["status"] == "SYNCED" and finished["currentRun"] is None
    assert finished["lastFinishedRun"] == {"id": run_id, "state": "SUCCEEDED"}
    # 1 start + 9 progress + 1 finish changes: the finish has the final version, whatever
    # progress was coalesced on the way.
    assert finished["version"] == before["version"] + 11
    for update in updates[1:-1]:
        assert update["currentRun"]["id"] == run_id and update["status"] == "IN_PROGRESS"


async def test_a_failed_run_arrives_with_its_failure(tenant: Tenant) -> None:
    _, (watched,) = await add_users(tenant, 1)
    worker = Worker(tenant)
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as stream,
    ):
        await live_user_stream(stream, tenant, watched)
        run_id = await worker.start(watched)
        await worker.finish(run_id, error_code="ERR_TOKEN_001")
        items = await stream.until(lambda i: user(i)["status"] == "FAILED")
    assert [user(i)["status"] for i in items] == ["IN_PROGRESS", "FAILED"]
    assert user(items[-1])["unresolvedFailureCount"] == 1
    assert user(items[-1])["lastFinishedRun"] == {"id": run_id, "state": "FAILED"}


async def test_user_ids_limit_the_stream(tenant: Tenant) -> None:
    _, ids = await add_users(tenant, 4)
    watched, unwatched = ids[:2], ids[2:]
    worker = Worker(tenant)
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, ids=watched) as stream,
    ):
        await live_user_stream(stream, tenant, watched[0])
        for user_id in unwatched + watched:
            await worker.run(user_id, progress_reports=0)
        items = await stream.until(
            lambda i: user(i)["id"] == watched[1] and user(i)["status"] == "SYNCED"
        )
        items += await stream.quiet(0.5)
    seen = {user(i)["id"] for i in items}
    assert seen == set(watched)


async def test_whole_tenant_stream_sees_every_user(tenant: Tenant) -> None:
    _, ids = await add_users(tenant, 3)
    worker = Worker(tenant)
    async with tenant.viewer.websocket() as session, Stream(session, USER_UPDATES) as stream:
        await live_user_stream(stream, tenant, ids[0])
        for user_id in ids:
            await worker.run(user_id, progress_reports=1)
        items = await stream.until(
            lambda i: user(i)["id"] == ids[-1] and user(i)["status"] == "SYNCED"
        )
    finished = {user(i)["id"] for i in items if user(i)["status"] == "SYNCED"}
    assert finished == set(ids)
    for user_id in ids:
        mine = [i for i in items if user(i)["id"] == user_id]
        assert versions(mine) == sorted(set(versions(mine)))
        assert user(mine[0])["status"] == "IN_PROGRESS"


async def test_added_users_appear_on_the_whole_tenant_stream(tenant: Tenant) -> None:
    _, (first,) = await add_users(tenant, 1)
    async with tenant.viewer.websocket() as session, Stream(session, USER_UPDATES) as stream:
        await live_user_stream(stream, tenant, first)
        _, added = await add_users(tenant, 2, prefix="late")
        items = await stream.until(lambda i: user(i)["id"] == added[-1])
    assert [user(i)["id"] for i in items] == added
    assert all(user(i)["status"] == "NEVER_SYNCED" for i in items)
