"""broadcaster.Broadcast with a race-free subscribe and bounded per-subscriber queues.

The adapter module for broadcaster's internals: broadcaster 0.3.1 offers no public hook for
subscribing, so ReliableBroadcast reads two private attributes of Broadcast, ``_backend`` and
``_subscribers`` (its listener fans events out through the latter). Every such use is here, and
tests/broadcast/test_broadcaster_internals.py fails loudly if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from broadcaster import Broadcast, BroadcastBackend, Event

from ._common import DEFAULT_MAX_QUEUE, DropOldestQueue


class Unsubscribed(Exception):
    """The subscription ended (its context was left)."""


class Subscriber:
    """One subscription's events, as broadcaster's own Subscriber hands them out."""

    __slots__ = ("_queue",)

    def __init__(self, queue: asyncio.Queue[Event | None]) -> None:
        self._queue = queue

    async def get(self) -> Event:
        item = await self._queue.get()
        if item is None:
            raise Unsubscribed
        return item

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while True:
                yield await self.get()
        except Unsubscribed:
            pass


class ReliableBroadcast(Broadcast):
    """Broadcast whose ``subscribe`` fixes two problems of broadcaster 0.3.1.

    * Two concurrent first subscriptions to one channel both pass the "no subscribers yet"
      check while the backend SUBSCRIBE is awaited; the second then replaces the first's
      queue, which silently never receives anything and raises KeyError on exit. Here the
      bookkeeping around backend (un)subscribe is serialised by a lock.
    * Each subscriber's queue was unbounded, so one stalled subscriber grew memory without
      limit. Here it holds at most ``subscriber_queue_limit`` events, dropping the oldest.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        backend: BroadcastBackend | None = None,
        subscriber_queue_limit: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        super().__init__(url, backend=backend)
        self._subscriber_queue_limit = subscriber_queue_limit
        self._subscribe_lock = asyncio.Lock()

    @property
    def backend(self) -> BroadcastBackend:
        return self._backend

    # Yields our Subscriber (get() and async iteration, as broadcaster's own), which is not a
    # subclass of the private broadcaster._base.Subscriber.
    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscriber]:  # type: ignore[override]
        queue: DropOldestQueue[Event | None] = DropOldestQueue(
            self._subscriber_queue_limit, f"subscriber of {channel!r}"
        )
        async with self._subscribe_lock:
            subscribers = self._subscribers.get(channel)
            if not subscribers:
                # Also when an empty set is left by an unsubscribe still waiting for the lock:
                # that unsubscribe re-checks and skips once it sees this subscriber.
                await self._backend.subscribe(channel)
                subscribers = self._subscribers.setdefault(channel, set())
            subscribers.add(queue)
        try:
            yield Subscriber(queue)
        finally:
            # Synchronous first, so a cancellation below cannot leave this queue registered.
            remaining = self._subscribers.get(channel, set())
            remaining.discard(queue)
            queue.put_nowait(None)
            if not remaining:
                async with self._subscribe_lock:
                    if not self._subscribers.get(channel):
                        self._subscribers.pop(channel, None)
                        await self._backend.unsubscribe(channel)
