"""Two API processes on one database: an update made through one reaches a subscriber connected
to the other, through the machine's Redis and through PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError

from app.lifecycle.bulk_requests import FIRST_RANGE
from subscriptions.hub import REQUESTED_STATES_MAX
from tests.conftest import Tenant
from tests.server import Server
from tests.services import redis_url
from tests.subscriptions.multi import api_on, postgres_servers
from tests.subscriptions.support import (
    METRICS_UPDATES,
    USER_UPDATES,
    WAIT,
    Stream,
    Worker,
    add_users,
    live_user_stream,
    versions,
)


@pytest.fixture(scope="module", params=["redis", "postgres"])
def servers(request: pytest.FixtureRequest) -> Iterator[list[Server]]:
    broker = redis_url() if request.param == "redis" else None
    with postgres_servers(2, broker) as running:
        yield running


def user(item: dict[str, Any]) -> dict[str, Any]:
    return item["syncUserUpdated"]


@pytest.mark.parametrize("direction", ["a_to_b", "b_to_a"])
async def test_update_through_one_process_reaches_subscriber_on_the_other(
    servers: list[Server], direction: str
) -> None:
    writer_server, reader_server = servers if direction == "a_to_b" else servers[::-1]
    tenant = Tenant(writer_server, f"cross-{direction}")
    _, (watched, other) = await add_users(tenant, 2)
    reader = api_on(reader_server, tenant, "viewer")
    worker = Worker(tenant)
    async with (
        reader.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as stream,
        Stream(session, METRICS_UPDATES) as metrics,
    ):
        await live_user_stream(stream, tenant, watched, within=20)
        initial = (await metrics.next())["syncMetricsUpdated"]
        await worker.run(other, progress_reports=0)
        run_id = await worker.start(watched)
        in_progress = await metrics.until(lambda m: m["syncMetricsUpdated"]["syncsInProgress"])
        await worker.progress(run_id, 50)
        await worker.finish(run_id)
        items = await stream.until(lambda i: user(i)["status"] == "SYNCED")
        done = await metrics.until(
            lambda m: (
                m["syncMetricsUpdated"]["changesLast24h"] == 50
                and m["syncMetricsUpdated"]["syncsInProgress"] == 0
            )
        )
    assert initial["totalUsers"] == 2
    assert {user(i)["id"] for i in items} == {watched}
    assert versions(items) == sorted(set(versions(items)))
    assert user(items[0])["status"] == "IN_PROGRESS"
    assert user(items[0])["currentRun"]["id"] == run_id
    assert user(items[-1])["lastFinishedRun"] == {"id": run_id, "state": "SUCCEEDED"}
    assert in_progress[-1]["syncMetricsUpdated"]["syncsInProgress"] == 1
    assert done[-1]["syncMetricsUpdated"]["failedSyncs"] == 0


async def test_events_too_big_for_the_broker_still_arrive(servers: list[Server]) -> None:
    """A 2000-character non-ASCII description makes a user event ~13 KB of JSON: more than a
    PostgreSQL NOTIFY carries (8000 bytes). It travels as a reference that the receiving
    process loads once; on Redis it travels whole."""
    writer_server, reader_server = servers
    tenant = Tenant(writer_server, "cross-big")
    description = "é" * 2000
    _, (watched,) = await add_users(tenant, 1, description=description)
    reader = api_on(reader_server, tenant, "viewer")
    worker = Worker(tenant)
    query = USER_UPDATES.replace("policy { id active }", "policy { id active description }")
    async with reader.websocket() as session, Stream(session, query, ids=[watched]) as stream:
        await live_user_stream(stream, tenant, watched, within=20)
        run_id = await worker.start(watched)
        await worker.finish(run_id)
        items = await stream.until(lambda i: user(i)["status"] == "SYNCED")
    assert [user(i)["status"] for i in items] == ["IN_PROGRESS", "SYNCED"]
    assert all(user(i)["policy"]["description"] == description for i in items)
    assert "could not publish" not in writer_server.log()


REQUEST_SYNCS = "mutation { requestSyncs(filter: {}) { requested skipped } }"
VERSION = "query($id: ID!) { syncUser(id: $id) { version } }"


async def test_a_bulk_request_reaches_watchers_on_the_other_process(servers: list[Server]) -> None:
    """requestSyncs announces each write transaction's users with one event: the other process
    loads the users its subscribers watch (on both sides of a range's edge), and tells its
    whole-tenant subscribers to refetch (the first range requests more users than it loads
    for them)."""
    writer_server, reader_server = servers
    tenant = Tenant(writer_server, "cross-bulk")
    count = FIRST_RANGE + 50
    assert FIRST_RANGE > REQUESTED_STATES_MAX
    _, ids = await add_users(tenant, count)
    watched = [ids[0], ids[FIRST_RANGE - 1], ids[FIRST_RANGE], ids[-1]]
    reader = api_on(reader_server, tenant, "viewer")
    async with (
        reader.websocket() as session,
        Stream(session, USER_UPDATES, ids=watched) as stream,
        Stream(session, USER_UPDATES) as everything,
    ):
        await live_user_stream(stream, tenant, ids[0], within=20)
        await live_user_stream(everything, tenant, ids[0], within=20)
        version = {
            u: (await tenant.viewer.execute(VERSION, id=u))["syncUser"]["version"] for u in watched
        }
        result = await tenant.operator.execute(REQUEST_SYNCS)
        assert result["requestSyncs"] == {"requested": count, "skipped": 0}
        seen: dict[str, int] = {}

        def all_seen(item: dict[str, Any]) -> bool:
            found = user(item)  # late echoes of the pokes carry older versions
            seen[found["id"]] = max(seen.get(found["id"], 0), found["version"])
            return all(seen.get(u) == version[u] + 1 for u in watched)

        await stream.until(all_seen, within=20)
        with pytest.raises(TransportQueryError) as refetch:
            while True:  # updates sent before the request may still be queued
                await everything.next(within=WAIT)
    assert seen == {u: version[u] + 1 for u in watched}
    assert refetch.value.errors is not None
    assert refetch.value.errors[0]["extensions"]["code"] == "CONFLICT"
