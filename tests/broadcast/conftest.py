"""Shared helpers for the broadcast tests: unique channels, bounded receives, a private Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest
from broadcaster import Broadcast, Event

from app.events.broker import BroadcastUnavailable
from app.events.broker._broadcast import Subscriber
from tests.private_redis import PrivateRedis, started_private_redis

# Upper bound for any single wait, so that no test can hang.
WAIT = 5.0


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


class FreezableProxy:
    """TCP proxy to a real server whose forwarding can be frozen, like a silently dead network."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()
