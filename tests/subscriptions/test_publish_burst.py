"""A burst of concurrent publishes from one process (many commits at once) loses nothing:
redis-py's default pool refused the 101st concurrent publish with "Too many connections"."""

from __future__ import annotations

import asyncio
import uuid

from app.events.broker import create_broadcast
from tests.services import redis_url

BURST = 400


async def test_a_burst_of_concurrent_publishes_is_delivered() -> None:
    url = redis_url()
    channel = f"test-burst-{uuid.uuid4().hex[:12]}"
    async with (
        create_broadcast(url) as publisher,
        create_broadcast(url) as receiver,
        receiver.subscribe(channel) as subscriber,
    ):
        await asyncio.gather(*(publisher.publish(channel, f"m{i}") for i in range(BURST)))
        received: set[str] = set()
        async with asyncio.timeout(10):
            while len(received) < BURST:
                received.add((await subscriber.get()).message)
    assert received == {f"m{i}" for i in range(BURST)}
