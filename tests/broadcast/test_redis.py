"""RedisPubSubBackend against the real Redis, and a private redis-server for restarts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from broadcaster import Broadcast
from redis.asyncio import Redis

from app.events.broker import BroadcastUnavailable, ReliableBroadcast, create_broadcast
from app.events.broker.redis_pubsub import RedisPubSubBackend
from tests.services import redis_url

from .conftest import WAIT, PrivateRedis, backend_tasks, eventually, publish_until_received, receive


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Broadcast, Broadcast]]:
    """Publisher and subscriber as separate Broadcast objects, as in two processes."""
    url = redis_url()
    async with create_broadcast(url) as publisher, create_broadcast(url) as subscriber:
        yield publisher, subscriber


async def test_delivers_in_order_between_two_broadcasts(
    pair: tuple[Broadcast, Broadcast], channel: str
) -> None:
    publisher, subscriber = pair
    async with subscriber.subscribe(channel) as sub:
        # No sleep: subscribe() returns only once Redis confirmed the SUBSCRIBE.
        for i in range(200):
            await publisher.publish(channel, f"m{i}")
        received = [(await receive(sub)).message for _ in range(200)]
    assert received == [f"m{i}" for i in range(200)]


async def test_channels_are_separate(pair: tuple[Broadcast, Broadcast], channel: str) -> None:
    publisher, subscriber = pair
    async with (
        subscriber.subscribe(channel + "-a") as sub_a,
        subscriber.subscribe(channel + "-b") as sub_b,
    ):
        await publisher.publish(channel + "-b", "for b")
        await publisher.publish(channel + "-a", "for a")
        assert (await receive(sub_a)).message == "for a"
        assert (await receive(sub_b)).message == "for b"


@pytest.mark.serial
async def test_unreachable_redis_fails_connect_quickly(private_redis: PrivateRedis) -> None:
    private_redis.kill()
    backend = RedisPubSubBackend(private_redis.url, connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BroadcastUnavailable, match="not reachable"):
        await backend.connect()
    assert time.monotonic() - started < 3
    assert backend_tasks("redis-pubsub-reader") == []


@pytest.mark.serial
async def test_survives_redis_restart(
    private_redis: PrivateRedis, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.events.broker")
    backend = RedisPubSubBackend(private_redis.url, publish_timeout=1.0)
    lost: list[bool] = []
    backend.on_disconnect = lambda: lost.append(backend.is_connected)
    async with (
        create_broadcast(private_redis.url) as publisher,
        ReliableBroadcast(backend=backend) as subscriber,
        subscriber.subscribe(channel) as sub,
    ):
        await publisher.publish(channel, "before")
        assert (await receive(sub)).message == "before"

        private_redis.kill()
        await eventually(lambda: not backend.is_connected)
        await eventually(lambda: bool(lost))  # told once, already marked down
        assert lost == [False]

        # Publishing into an outage fails clearly and within a bound, it does not hang.
        started = time.monotonic()
        with pytest.raises(BroadcastUnavailable, match="could not publish"):
            await publisher.publish(channel, "lost")
        assert time.monotonic() - started < 3

        await asyncio.to_thread(private_redis.start)
        started = time.monotonic()
        await publish_until_received(publisher, sub, channel)
        assert time.monotonic() - started < 5, "delivery should resume within a few seconds"
        assert backend.reconnects >= 1
        assert lost == [False], "one loss, not one call per failed reconnection attempt"
        # Logging warnings only, an operator sees the outage begin and end.
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("lost" in m or "failed" in m for m in logged), logged
        assert any(m.startswith("reconnected") for m in logged), logged

        await publisher.publish(channel, "after")
        async with asyncio.timeout(WAIT):
            while (await receive(sub)).message != "after":
                pass


async def test_backend_queue_is_bounded(channel: str) -> None:
    url = redis_url()
    backend = RedisPubSubBackend(url, max_queue=5)
    await backend.connect()
    client = Redis.from_url(url)
    try:
        await backend.subscribe(channel)
        for i in range(20):
            await client.publish(channel, f"m{i}")
        await eventually(lambda: backend.dropped >= 15)
        received = [(await backend.next_published()).message for _ in range(5)]
        assert received == [f"m{i}" for i in range(15, 20)]
    finally:
        await client.aclose()
        await backend.disconnect()


@pytest.mark.serial
async def test_disconnect_leaves_no_tasks(channel: str) -> None:
    url = redis_url()
    before = asyncio.all_tasks()
    publisher, subscriber = create_broadcast(url), create_broadcast(url)
    await publisher.connect()
    await subscriber.connect()
    async with subscriber.subscribe(channel) as sub:
        await publisher.publish(channel, "x")
        await receive(sub)
    await subscriber.disconnect()
    await publisher.disconnect()
    assert backend_tasks("redis-pubsub-reader") == []
    await asyncio.sleep(0.05)  # let broadcaster's own cancelled listener task finish
    assert [t for t in asyncio.all_tasks() - before if not t.done()] == []


@pytest.mark.serial
async def test_detects_silent_connection_loss(private_redis: PrivateRedis, channel: str) -> None:
    # A frozen server keeps the TCP connection open: only the PING heartbeat notices.
    backend = RedisPubSubBackend(private_redis.url, health_interval=0.5)
    async with (
        ReliableBroadcast(
            backend=RedisPubSubBackend(private_redis.url, publish_timeout=0.5)
        ) as publisher,
        ReliableBroadcast(backend=backend) as subscriber,
        subscriber.subscribe(channel) as sub,
    ):
        private_redis.pause()
        try:
            await eventually(lambda: not backend.is_connected)
        finally:
            private_redis.resume()
        await publish_until_received(publisher, sub, channel)
        assert backend.reconnects >= 1


@pytest.mark.serial
async def test_publish_queued_past_its_timeout_is_not_lost(channel: str) -> None:
    """A process so busy that a publish waits longer than publish_timeout (bench/subscriptions.py
    under CPU load: 25 of 1,000 events, starts and finishes among them, timed out while Redis
    was fine) must not drop the event: the mutation committed, and no subscriber would learn."""
    url = redis_url()
    backend = RedisPubSubBackend(url, publish_timeout=0.2)
    async with (
        ReliableBroadcast(backend=backend) as publisher,
        create_broadcast(url) as subscriber,
        subscriber.subscribe(channel) as sub,
    ):
        await eventually(lambda: backend.is_connected)
        client = backend._pub_client
        assert client is not None
        publish = client.publish
        calls = 0

        async def stalled_once(*args: Any, **kwargs: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                await asyncio.sleep(0.5)  # waiting behind others, past the timeout
            return await publish(*args, **kwargs)

        client.publish = stalled_once  # type: ignore[method-assign]
        await publisher.publish(channel, "start")
        assert (await receive(sub)).message == "start"
        assert calls == 2
        assert backend.publish_retries == 1


@pytest.mark.serial
async def test_publish_into_a_frozen_redis_fails_once_it_is_noticed(
    private_redis: PrivateRedis, channel: str
) -> None:
    """Timed-out publishes are tried again only while Redis answers the subscribe connection:
    a frozen Redis (TCP open, no answers) still fails them, once the heartbeat notices."""
    backend = RedisPubSubBackend(private_redis.url, publish_timeout=0.3, health_interval=0.5)
    async with ReliableBroadcast(backend=backend) as publisher:
        await eventually(lambda: backend.is_connected)
        private_redis.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BroadcastUnavailable, match="could not publish"):
                await publisher.publish(channel, "lost")
            assert time.monotonic() - started < 5
            assert not backend.is_connected
        finally:
            private_redis.resume()
