"""create_broadcast, the memory backend, ReliableBroadcast and the shared helpers (no services)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from broadcaster import BroadcastBackend

from app.events.broker import ReliableBroadcast, create_broadcast
from app.events.broker._common import DropOldestQueue, redact_url
from app.events.broker.postgres_notify import PostgresNotifyBackend
from app.events.broker.redis_pubsub import RedisPubSubBackend

from .conftest import WAIT, eventually, receive


def _backend(url: str) -> BroadcastBackend:
    """create_broadcast's backend (it builds a ReliableBroadcast, declared a plain Broadcast)."""
    broadcast = create_broadcast(url)
    assert isinstance(broadcast, ReliableBroadcast)
    return broadcast.backend


# broadcaster's memory backend, reached through our public factory rather than its private module.
MemoryBackend = type(_backend("memory://"))


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://h:6380/1"])
def test_redis_urls_use_our_backend(url: str) -> None:
    broadcast = create_broadcast(url)
    assert isinstance(broadcast, ReliableBroadcast)
    assert isinstance(broadcast.backend, RedisPubSubBackend)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@h/db",
        "postgresql://u:p@h/db",
        "postgresql+asyncpg://u:p@h/db",
    ],
)
def test_postgres_urls_use_our_backend_with_a_plain_dsn(url: str) -> None:
    backend = _backend(url)
    assert isinstance(backend, PostgresNotifyBackend)
    assert backend._url == "postgresql://u:p@h/db"


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "kafka://h:9092", "redis-stream://h", "redis+x://h", "nonsense"]
)
def test_unknown_scheme_is_a_clear_value_error(url: str) -> None:
    with pytest.raises(ValueError, match=r"unsupported broadcast URL scheme.*use memory://"):
        create_broadcast(url)


async def test_memory_delivers_in_order(channel: str) -> None:
    async with create_broadcast("memory://") as broadcast, broadcast.subscribe(channel) as sub:
        for i in range(100):
            await broadcast.publish(channel, f"m{i}")
        assert [(await receive(sub)).message for _ in range(100)] == [f"m{i}" for i in range(100)]


# A base known only at run time (mypy needs a class it can name).
class SlowSubscribeMemoryBackend(MemoryBackend):  # type: ignore[valid-type,misc]
    """Memory backend whose SUBSCRIBE takes a while, like a real broker's round trip."""

    async def subscribe(self, channel: str) -> None:
        await asyncio.sleep(0.05)
        await super().subscribe(channel)


async def test_concurrent_first_subscribers_both_receive(channel: str) -> None:
    # With broadcaster's own Broadcast the first of two racing first subscribers never
    # receives anything, and leaving raises KeyError.
    backend = SlowSubscribeMemoryBackend("memory://")
    async with ReliableBroadcast(backend=backend) as broadcast:
        both_ready = asyncio.Barrier(3)

        async def consume() -> str:
            async with broadcast.subscribe(channel) as sub:
                await both_ready.wait()
                return (await receive(sub)).message

        tasks = [asyncio.create_task(consume()) for _ in range(2)]
        async with asyncio.timeout(WAIT):
            await both_ready.wait()
        await broadcast.publish(channel, "hello")
        async with asyncio.timeout(WAIT):
            assert await asyncio.gather(*tasks) == ["hello", "hello"]
        assert channel not in broadcast._subscribers


async def test_a_stalled_subscriber_queue_is_bounded(channel: str) -> None:
    broadcast = ReliableBroadcast("memory://", subscriber_queue_limit=10)
    async with broadcast, broadcast.subscribe(channel) as sub:
        for i in range(50):
            await broadcast.publish(channel, f"m{i}")
        queue = sub._queue
        assert isinstance(queue, DropOldestQueue)
        await eventually(lambda: queue.dropped >= 40)
        received = [(await receive(sub)).message for _ in range(10)]
    assert received == [f"m{i}" for i in range(40, 50)]


async def test_drop_oldest_queue_counts_and_rate_limits_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue: DropOldestQueue[int] = DropOldestQueue(3, "test")
    with caplog.at_level(logging.WARNING):
        for i in range(10):
            await queue.put(i)  # never blocks
    assert queue.dropped == 7
    assert [queue.get_nowait() for _ in range(3)] == [7, 8, 9]
    assert len([r for r in caplog.records if "queue full" in r.message]) == 1


def test_redact_url_masks_only_the_password() -> None:
    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
