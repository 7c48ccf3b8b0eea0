"""Shared helpers for the broadcast tests: unique channels, bounded receives, a private Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Protocol

import pytest
from broadcaster import Broadcast, Event

from app.events.broker import BroadcastUnavailable
from tests.private_redis import PrivateRedis, started_private_redis

# Upper bound for any single wait, so that no test can hang.
WAIT = 5.0


class Subscriber(Protocol):
    """What the helpers read: ReliableBroadcast's Subscriber, which create_broadcast's
    declared Broadcast types as broadcaster's own (they share no base class)."""

    async def get(self) -> Event: ...


@pytest.fixture
def channel() -> str:
    # Unique per test: other test runs may share the broker and the database.
    return f"test-broadcast-{uuid.uuid4().hex[:16]}"


async def receive(subscriber: Subscriber, within: float = WAIT) -> Event:
    async with asyncio.timeout(within):
        return await subscriber.get()


async def publish_until_received(
    publisher: Broadcast, subscriber: Subscriber, channel: str, within: float = 15.0
) -> Event:
    """Publish probes until one arrives: after an outage nobody knows when delivery resumes."""
    async with asyncio.timeout(within):
        attempt = 0
        while True:
            attempt += 1
            try:
                await publisher.publish(channel, f"probe-{attempt}")
            except BroadcastUnavailable:
                await asyncio.sleep(0.2)
                continue
            try:
                return await receive(subscriber, within=0.3)
            except TimeoutError:
                pass


async def eventually(condition: Callable[[], bool], within: float = WAIT) -> None:
    """Wait until ``condition()`` holds; it reads state of the code under test, so poll it."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - no event to wait on for foreign state
            await asyncio.sleep(0.02)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with started_private_redis() as server:
        yield server


def backend_tasks(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]
