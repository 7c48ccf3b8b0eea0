"""A broker outage longer than the grace is never silent (issue 11), on Redis and on PostgreSQL
LISTEN/NOTIFY. Subscriptions ride out a short outage on the event log
(test_broker_outage_replay.py); here the grace is 1 s, so this outage outlasts it: subscribers
get an `error` with SERVICE_UNAVAILABLE and the socket closes with 1013 within seconds, new
connections are refused with 1013 while the broker is away, and once it is back a new
subscription sees later updates. Mutations made meanwhile still succeed (clients refetch to see
them). The database is the shared PostgreSQL throughout; only the broker, a private server of
the test's own, goes down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from gql.transport.exceptions import TransportQueryError

from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.brokers import Broker, private_broker
from tests.subscriptions.multi import api_on, postgres_servers
from tests.subscriptions.support import (
    METRICS_UPDATES,
    USER_UPDATES,
    Stream,
    Worker,
    add_users,
    close_code,
    live_user_stream,
    raw_socket,
)

GRACE = 1.0  # seconds subscriptions go on without the broker (SYNCSTATUS_BROKER_GRACE_SECONDS)
SIGNALLED_WITHIN = 5.0  # seconds after the broker died
RESUME_WITHIN = 20.0  # seconds after the broker is back


@pytest.fixture(scope="module", params=["redis", "postgres"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    with private_broker(request.param, sigkill=False) as broker:
        yield broker


@pytest.fixture(scope="module")
def servers(broker: Broker) -> Iterator[list[Server]]:
    env = {"SYNCSTATUS_BROKER_GRACE_SECONDS": str(GRACE)}
    with postgres_servers(2, broker.url, env=env) as running:
        yield running


def user(item: dict[str, Any]) -> dict[str, Any]:
    return item["syncUserUpdated"]


async def _ended_unavailable(stream: Stream) -> float:
    """Seconds until the stream ended with SERVICE_UNAVAILABLE (anything else fails)."""
    started = time.monotonic()
    with pytest.raises(TransportQueryError) as ended:
        while True:  # events sent before the loss may still be queued
            await stream.next(within=SIGNALLED_WITHIN)
    assert ended.value.errors is not None
    assert ended.value.errors[0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    return time.monotonic() - started


async def _refused_with_1013(server: Server, token: str) -> bool:
    try:
        async with raw_socket(server, token):
            return False  # acknowledged
    except websockets.ConnectionClosed as closed:
        return closed.rcvd is not None and closed.rcvd.code == 1013


async def test_a_broker_outage_ends_subscriptions_explicitly_and_new_ones_work_after(
    servers: list[Server], broker: Broker
) -> None:
    writer_server, reader_server = servers
    tenant = Tenant(writer_server, "broker-outage")
    _, (watched,) = await add_users(tenant, 1)
    worker = Worker(tenant)
    reader = api_on(reader_server, tenant, "viewer")
    token = reader.token
    assert token is not None
    async with (
        reader.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as stream,
        Stream(session, METRICS_UPDATES) as metrics,
        raw_socket(reader_server, token) as idle,  # acknowledged, no subscription yet
    ):
        await live_user_stream(stream, tenant, watched, within=30, poll=0.3)
        await metrics.next()

        broker.kill()
        killed = time.monotonic()
        for ended in (stream, metrics):
            await _ended_unavailable(ended)
        assert time.monotonic() - killed < SIGNALLED_WITHIN
        assert await close_code(idle, within=SIGNALLED_WITHIN) == 1013

        run_id = await worker.start(watched)  # committed; its event cannot be published
        assert time.monotonic() - killed < 10.0, "a broker outage must not stall writes"
        assert await _refused_with_1013(reader_server, token), "a new subscriber would miss it"

    await asyncio.to_thread(broker.start)
    restarted = time.monotonic()
    while not await asyncio.wait_for(_accepted(reader_server, token), 10):
        assert time.monotonic() - restarted < RESUME_WITHIN, "still refused after the restart"
        await asyncio.sleep(0.1)  # a refusal is quick: how late the resumption is seen

    # Live again end to end on a new subscription: the finish of the run started during the
    # outage is delivered, and the metrics follow.
    async with (
        reader.websocket() as session,
        Stream(session, USER_UPDATES, ids=[watched]) as fresh,
        Stream(session, METRICS_UPDATES) as metrics,
    ):
        await live_user_stream(fresh, tenant, watched, within=RESUME_WITHIN, poll=0.3)
        assert await worker.finish(run_id) == "SUCCEEDED"
        items = await fresh.until(lambda i: user(i)["status"] == "SYNCED")
        assert user(items[-1])["lastFinishedRun"]["id"] == run_id
        await metrics.until(lambda m: m["syncMetricsUpdated"]["syncsInProgress"] == 0)
    assert "Traceback" not in reader_server.log()


async def _accepted(server: Server, token: str) -> bool:
    try:
        async with raw_socket(server, token):
            return True
    except websockets.ConnectionClosed:
        return False
