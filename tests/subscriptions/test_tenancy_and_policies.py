"""A subscriber sees only its own tenant; a policy change reaches the watchers of its users."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Tenant
from tests.subscriptions.support import (
    METRICS_UPDATES,
    SET_ACTIVE,
    USER_UPDATES,
    Stream,
    Worker,
    add_users,
    live_user_stream,
)


def user(item: dict[str, Any]) -> dict[str, Any]:
    return item["syncUserUpdated"]


async def seen_all(stream: Stream, ids: list[str]) -> list[dict[str, Any]]:
    """Updates until each of ``ids`` had one, then whatever else follows shortly."""
    items: list[dict[str, Any]] = []
    while {user(i)["id"] for i in items} != set(ids):
        items.append(await stream.next())
    return items + await stream.quiet(0.5)


async def test_a_subscriber_sees_only_its_own_tenant(tenant: Tenant, other_tenant: Tenant) -> None:
    _, (mine,) = await add_users(tenant, 1)
    _, (theirs,) = await add_users(other_tenant, 1)
    worker = Worker(tenant)
    async with (
        other_tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES) as everything,
        Stream(session, USER_UPDATES, ids=[mine, theirs]) as by_id,
        Stream(session, METRICS_UPDATES) as metrics,
    ):
        await live_user_stream(everything, other_tenant, theirs)
        await live_user_stream(by_id, other_tenant, theirs)
        everything.drain()  # the pokes that made by_id live
        first = (await metrics.next())["syncMetricsUpdated"]
        metrics.drain()
        await worker.run(mine, progress_reports=2)
        await asyncio.sleep(1.5)  # longer than the metrics' once-a-second pace
        assert everything.drain() == []
        assert by_id.drain() == [], "an id of another tenant behaves as if it did not exist"
        later = [m["syncMetricsUpdated"] for m in metrics.drain()]
    assert all(m["syncsInProgress"] == first["syncsInProgress"] == 0 for m in later)
    assert first["totalUsers"] == 1


async def test_policy_deactivation_reaches_watchers_of_its_users(tenant: Tenant) -> None:
    policy, ids = await add_users(tenant, 3)
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, ids=ids[:2]) as page,
        Stream(session, USER_UPDATES) as everything,
    ):
        await live_user_stream(page, tenant, ids[0])
        await live_user_stream(everything, tenant, ids[0])
        page.drain()
        await tenant.admin.execute(SET_ACTIVE, id=policy, active=False)
        on_page = await seen_all(page, ids[:2])
        on_everything = await seen_all(everything, ids)
    assert sorted(user(i)["id"] for i in on_page) == sorted(ids[:2])
    assert sorted(user(i)["id"] for i in on_everything) == sorted(ids)
    for item in on_page + on_everything:
        assert user(item)["policy"] == {"id": policy, "active": False}


async def test_policy_change_versions_grow_and_reactivation_follows(tenant: Tenant) -> None:
    policy, (watched,) = await add_users(tenant, 1)
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as stream,
    ):
        live = user(await live_user_stream(stream, tenant, watched))
        await tenant.admin.execute(SET_ACTIVE, id=policy, active=False)
        off = user(await stream.next())
        await tenant.admin.execute(SET_ACTIVE, id=policy, active=True)
        on = user(await stream.next())
    assert live["version"] < off["version"] < on["version"]
    assert off["policy"]["active"] is False and on["policy"]["active"] is True
