"""Redis restarts under live subscribers: the service reconnects by itself and delivery resumes
within seconds, across processes, without restarting anything of ours. Mutations made while
Redis is down still succeed (their events are lost; clients refetch, versions tell them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Tenant
from tests.private_redis import PrivateRedis, started_private_redis
from tests.server import Server
from tests.subscriptions.multi import api_on, postgres_servers
from tests.subscriptions.support import (
    METRICS_UPDATES,
    USER_UPDATES,
    Stream,
    Worker,
    add_users,
    live_user_stream,
)

RESUME_WITHIN = 10.0  # seconds after Redis is back


@pytest.fixture(scope="module")
def redis() -> Iterator[PrivateRedis]:
    with started_private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def servers(redis: PrivateRedis) -> Iterator[list[Server]]:
    with postgres_servers(2, redis.url) as running:
        yield running


def user(item: dict) -> dict:  # type: ignore[type-arg]
    return item["syncUserUpdated"]


async def _poke_until_delivered(stream: Stream, tenant: Tenant, user_id: str) -> float:
    """Seconds until a poke through server A reached the stream on server B."""
    started = time.monotonic()
    await live_user_stream(stream, tenant, user_id, within=30, poll=0.3)
    return time.monotonic() - started


async def test_delivery_resumes_after_a_redis_restart(
    servers: list[Server], redis: PrivateRedis
) -> None:
    writer_server, reader_server = servers
    tenant = Tenant(writer_server, "redis-restart")
    _, (watched,) = await add_users(tenant, 1)
    worker = Worker(tenant)
    reader = api_on(reader_server, tenant, "viewer")
    async with (
        reader.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as stream,
        Stream(session, METRICS_UPDATES) as metrics,
    ):
        await _poke_until_delivered(stream, tenant, watched)
        await metrics.next()

        redis.kill()
        started = time.monotonic()
        run_id = await worker.start(watched)  # committed; its event cannot be published
        assert time.monotonic() - started < 6.0, "a broker outage must not stall writes"
        await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - started)))  # down for 2 s
        redis.start()
        resumed_after = await _poke_until_delivered(stream, tenant, watched)
        assert resumed_after < RESUME_WITHIN, f"delivery resumed only after {resumed_after:.1f}s"

        # Live again end to end: a finish is delivered, and the metrics follow.
        assert await worker.finish(run_id) == "SUCCEEDED"
        items = await stream.until(lambda i: user(i)["status"] == "SYNCED")
        assert user(items[-1])["lastFinishedRun"]["id"] == run_id
        await metrics.until(lambda m: m["syncMetricsUpdated"]["syncsInProgress"] == 0)

    # A subscription opened after the restart works too.
    async with (
        reader.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as fresh,
    ):
        await _poke_until_delivered(fresh, tenant, watched)
    assert "Traceback" not in reader_server.log()
