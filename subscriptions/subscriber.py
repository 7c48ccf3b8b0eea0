"""One subscriber's bounded mailbox: coalesced state per user, start and finish never dropped.

A slow reader gets the latest state per user instead of an ever-growing queue. Only a reader
so far behind that even lifecycle events pile up past the bound is cut off (the client then
resubscribes and refetches); everyone else is unaffected. Small when idle: an open dashboard
holds one of these per page, and thousands of them per process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.domain import views
from app.events.messages import UserEvent

MAX_PENDING_PER_USER = 8
MAX_PENDING = 5_000
MAX_TRACKED_VERSIONS = 20_000
# What offer() did with an event, for the fan-out's counters.
QUEUED, MERGED, OVERFLOWED = 0, 1, 2


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind (or missed events); it must refetch."""


def public_version(event: UserEvent) -> int:
    return views.public_version(event.user.version, event.user.policy)


class UserSubscriber:
    __slots__ = (
        "_delivered",
        "_pending",
        "_size",
        "_waiter",
        "listener",
        "overflowed",
        "user_ids",
    )

    def __init__(self, user_ids: frozenset[int] | None) -> None:
        self.user_ids = user_ids  # None: the whole tenant
        self._pending: dict[int, list[UserEvent]] = {}  # in arrival order of users
        self._delivered: dict[int, int] | None = None  # user -> last version sent
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        # Called when events arrive, for a reader that does not wait in next_batch().
        self.listener: Callable[[], None] | None = None
        self.overflowed = False

    @property
    def pending(self) -> int:
        """Events waiting to be sent (bounded by MAX_PENDING)."""
        return self._size

    def offer(self, event: UserEvent) -> int:
        """Queues the event; QUEUED, MERGED (into a waiting state) or OVERFLOWED (just now)."""
        was_overflowed = self.overflowed
        outcome = QUEUED
        queue = self._pending.get(event.user.id)
        if queue is None:
            self._pending[event.user.id] = [event]
            self._size += 1
        elif public_version(event) <= public_version(queue[-1]):
            return MERGED if not was_overflowed else QUEUED  # a newer state is waiting
        elif queue[-1].coalescable:
            queue[-1] = event  # the newer state supersedes an unsent progress update
            outcome = MERGED
        elif len(queue) < MAX_PENDING_PER_USER:
            queue.append(event)
            self._size += 1
        else:
            self.overflowed = True
        if self._size > MAX_PENDING:
            self.overflowed = True
        self._wake()
        if self.overflowed:
            return QUEUED if was_overflowed else OVERFLOWED
        return outcome

    def overflow(self) -> None:
        """Cut the subscriber off: events it needed were lost or are too many to send."""
        self.overflowed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.listener is not None:
            self.listener()

    async def next_batch(self) -> list[UserEvent]:
        """Waits for events; returns one user's pending events in version order."""
        while not self._pending and not self.overflowed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.take_batch()

    def take_batch(self) -> list[UserEvent]:
        """One user's pending events in version order, without waiting ([] if none)."""
        if self.overflowed:
            raise SubscriberOverflow
        if not self._pending:
            return []
        user_id = next(iter(self._pending))
        events = self._pending.pop(user_id)
        self._size -= len(events)
        delivered = self._delivered
        if delivered is None:
            delivered = self._delivered = {}
        fresh = []
        for event in events:
            version = public_version(event)
            if version > delivered.get(user_id, 0):
                delivered.pop(user_id, None)  # re-insert: the dict stays in least-recent order
                delivered[user_id] = version
                fresh.append(event)
        while len(delivered) > MAX_TRACKED_VERSIONS:
            del delivered[next(iter(delivered))]
        return fresh
