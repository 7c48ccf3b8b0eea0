"""PostgresNotifyBackend against the real PostgreSQL, including terminated connections."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
import pytest
from broadcaster import Broadcast

from app.events.broker import BroadcastUnavailable, ReliableBroadcast, create_broadcast
from app.events.broker.postgres_notify import MAX_PAYLOAD_BYTES, PostgresNotifyBackend
from tests.freezable_proxy import FreezableProxy
from tests.services import postgres_admin_url

from .conftest import (
    WAIT,
    backend_tasks,
    eventually,
    publish_until_received,
    receive,
)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Broadcast, Broadcast]]:
    """Publisher and subscriber as separate Broadcast objects, as in two processes."""
    url = postgres_admin_url()
    async with create_broadcast(url) as publisher, create_broadcast(url) as subscriber:
        yield publisher, subscriber


async def test_delivers_in_order_between_two_broadcasts(
    pair: tuple[Broadcast, Broadcast], channel: str
) -> None:
    publisher, subscriber = pair
    async with subscriber.subscribe(channel) as sub:
        for i in range(200):
            await publisher.publish(channel, f"m{i}")
        received = [(await receive(sub)).message for _ in range(200)]
    assert received == [f"m{i}" for i in range(200)]


async def test_concurrent_publishes_all_arrive(
    pair: tuple[Broadcast, Broadcast], channel: str
) -> None:
    # broadcaster's own backend publishes on its LISTEN connection and fails here.
    publisher, subscriber = pair
    async with subscriber.subscribe(channel) as sub:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(publisher.publish(channel, f"m{i}") for i in range(50)))
        received = {(await receive(sub)).message for _ in range(50)}
    assert received == {f"m{i}" for i in range(50)}


async def test_payload_limit(pair: tuple[Broadcast, Broadcast], channel: str) -> None:
    publisher, subscriber = pair
    async with subscriber.subscribe(channel) as sub:
        largest = "x" * MAX_PAYLOAD_BYTES
        await publisher.publish(channel, largest)
        assert (await receive(sub)).message == largest
        with pytest.raises(ValueError, match=r"7901 bytes.*8000 bytes"):
            await publisher.publish(channel, "x" * (MAX_PAYLOAD_BYTES + 1))
        # The limit is in UTF-8 bytes, not characters.
        with pytest.raises(ValueError, match="7902 bytes"):
            await publisher.publish(channel, "é" * 3951)


async def test_overlong_channel_name_is_rejected(pair: tuple[Broadcast, Broadcast]) -> None:
    publisher, subscriber = pair
    with pytest.raises(ValueError, match="channel name"):
        await publisher.publish("c" * 64, "x")
    with pytest.raises(ValueError, match="channel name"):
        async with subscriber.subscribe("c" * 64):
            pass


def test_a_connection_left_mid_operation_is_a_lost_connection() -> None:
    """asyncpg raises InternalClientError on a LISTEN connection whose server died in the
    middle of an operation (test_broker_outage_replay's killed broker, once): the supervisor
    must reconnect as for any lost connection, not log it as a bug with a traceback."""
    assert issubclass(asyncpg.InternalClientError, PostgresNotifyBackend.connection_errors)


@pytest.mark.serial
async def test_unreachable_postgres_fails_connect_quickly() -> None:
    postgres_admin_url()  # a running server proves the closed port below is the only problem
    backend = PostgresNotifyBackend("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)
    with pytest.raises(BroadcastUnavailable, match="not reachable"):
        await backend.connect()


@pytest.mark.serial
async def test_survives_terminated_connections(channel: str) -> None:
    url = postgres_admin_url()
    name = f"test-broadcast-{uuid.uuid4().hex[:8]}"
    backend = PostgresNotifyBackend(url, application_name=name)
    lost: list[bool] = []
    backend.on_disconnect = lambda: lost.append(backend.is_connected)
    admin = await asyncpg.connect(url)
    try:
        async with (
            create_broadcast(url) as publisher,
            ReliableBroadcast(backend=backend) as subscriber,
            subscriber.subscribe(channel) as sub,
        ):
            await publisher.publish(channel, "before")
            assert (await receive(sub)).message == "before"

            pid = backend.listen_server_pid
            assert pid is not None
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

            started = time.monotonic()
            await publish_until_received(publisher, sub, channel)
            assert time.monotonic() - started < 5, "delivery should resume within a few seconds"
            assert backend.reconnects >= 1
            assert lost == [False], "the lost LISTEN connection is told once"
            assert backend.listen_server_pid not in (None, pid)

            # Kill this backend's publish pool connections too: publish retries on a new one.
            await backend.publish(channel, "warm the pool")
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                f"{name}-publish",
            )
            assert killed >= 1
            await asyncio.sleep(0.1)
            await backend.publish(channel, "after")
            async with asyncio.timeout(WAIT):
                while (await receive(sub)).message != "after":
                    pass
    finally:
        await admin.close()


@pytest.mark.serial
async def test_disconnect_leaves_no_tasks(channel: str) -> None:
    url = postgres_admin_url()
    before = asyncio.all_tasks()
    publisher, subscriber = create_broadcast(url), create_broadcast(url)
    await publisher.connect()
    await subscriber.connect()
    async with subscriber.subscribe(channel) as sub:
        await publisher.publish(channel, "x")
        await receive(sub)
    await subscriber.disconnect()
    await publisher.disconnect()
    assert backend_tasks("postgres-listen-supervisor") == []
    await asyncio.sleep(0.05)  # let broadcaster's own cancelled listener task finish
    assert [t for t in asyncio.all_tasks() - before if not t.done()] == []


async def test_publish_when_closed_is_a_clear_error(channel: str) -> None:
    backend = PostgresNotifyBackend(postgres_admin_url())
    with pytest.raises(RuntimeError, match="before connect"):
        await backend.publish(channel, "x")
    assert isinstance(BroadcastUnavailable("x"), ConnectionError)


@pytest.mark.serial
async def test_detects_silent_connection_loss(channel: str) -> None:
    # A frozen network keeps the TCP connection open: only the periodic health check notices.
    url = postgres_admin_url()
    proxy = FreezableProxy("127.0.0.1", 5432)
    await proxy.start()
    proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert proxied != url
    backend = PostgresNotifyBackend(proxied, health_interval=0.5, connect_timeout=1.0)
    try:
        async with (
            create_broadcast(url) as publisher,
            ReliableBroadcast(backend=backend) as subscriber,
            subscriber.subscribe(channel) as sub,
        ):
            proxy.freeze()
            try:
                await eventually(lambda: not backend.is_connected)
            finally:
                proxy.thaw()
            await publish_until_received(publisher, sub, channel)
            assert backend.reconnects >= 1
    finally:
        await proxy.close()


@pytest.mark.serial
async def test_a_listen_on_a_silent_network_neither_hangs_nor_stays_deaf(channel: str) -> None:
    """A first subscriber of a channel while the network is silently dead: its LISTEN gives up
    within the health interval (it used to wait for TCP, minutes, holding every other subscribe
    behind it), and once the network is back the channel is heard."""
    url = postgres_admin_url()
    proxy = FreezableProxy("127.0.0.1", 5432)
    await proxy.start()
    proxied = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    backend = PostgresNotifyBackend(proxied, health_interval=0.5, connect_timeout=1.0)
    later = f"{channel}-later"
    try:
        async with (
            create_broadcast(url) as publisher,
            ReliableBroadcast(backend=backend) as subscriber,
            subscriber.subscribe(channel) as first,
            AsyncExitStack() as stack,
        ):
            proxy.freeze()
            try:
                async with asyncio.timeout(WAIT):
                    second = await stack.enter_async_context(subscriber.subscribe(later))
            finally:
                proxy.thaw()
            await publish_until_received(publisher, second, later)
            await publish_until_received(publisher, first, channel)
    finally:
        await proxy.close()


@pytest.mark.serial
async def test_publish_retries_over_a_dead_pooled_connection(channel: str) -> None:
    backend = PostgresNotifyBackend(postgres_admin_url(), publish_timeout=0.5)
    await backend.connect()
    real_pool = backend._pool
    assert real_pool is not None

    class FlakyPool:
        """Fails the first ``failures`` NOTIFYs like a pooled connection the server dropped."""

        def __init__(self, failures: int) -> None:
            self.failures = failures
            self.calls = 0

        async def execute(self, *args: object) -> str:
            self.calls += 1
            if self.calls <= self.failures:
                raise asyncpg.ConnectionDoesNotExistError("connection was closed")
            assert real_pool is not None
            return await real_pool.execute(*args)

    try:
        await backend.subscribe(channel)
        backend._pool = flaky = FlakyPool(failures=1)
        await backend.publish(channel, "x")
        assert flaky.calls == 2
        async with asyncio.timeout(WAIT):
            assert (await backend.next_published()).message == "x"

        backend._pool = FlakyPool(failures=1000)
        started = time.monotonic()
        with pytest.raises(BroadcastUnavailable, match=r"could not NOTIFY.*connection was closed"):
            await backend.publish(channel, "y")
        assert time.monotonic() - started < 1.5
    finally:
        backend._pool = real_pool
        await backend.disconnect()


@pytest.mark.serial
async def test_notify_queued_past_its_timeout_is_not_lost(channel: str) -> None:
    """As for Redis (test_redis.py): a NOTIFY that waited past publish_timeout in a busy
    process while PostgreSQL is fine is tried again, not dropped without anyone knowing."""
    backend = PostgresNotifyBackend(postgres_admin_url(), publish_timeout=0.2)
    await backend.connect()
    real_pool = backend._pool
    assert real_pool is not None

    class StalledOnce:
        def __init__(self) -> None:
            self.calls = 0

        async def execute(self, *args: object) -> str:
            self.calls += 1
            if self.calls == 1:
                await asyncio.sleep(0.5)  # waiting behind others, past the timeout
            assert real_pool is not None
            return await real_pool.execute(*args)

    try:
        await backend.subscribe(channel)
        await eventually(lambda: backend.is_connected)
        backend._pool = stalled = StalledOnce()
        await backend.publish(channel, "start")
        assert stalled.calls == 2
        assert backend.publish_retries == 1
        async with asyncio.timeout(WAIT):
            assert (await backend.next_published()).message == "start"
    finally:
        backend._pool = real_pool
        await backend.disconnect()
