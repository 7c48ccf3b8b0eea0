"""One subscriber's bounded mailbox: coalesced state per user, start and finish never dropped.

A slow reader gets the latest state per user instead of an ever-growing queue. Only a reader
so far behind that even lifecycle events pile up past the bound is cut off (the client then
resubscribes and refetches); everyone else is unaffected.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from app.events import UserEvent

MAX_PENDING_PER_USER = 8
MAX_PENDING = 5_000
MAX_TRACKED_VERSIONS = 20_000


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind; it must refetch."""


def public_version(event: UserEvent) -> int:
    policy = event.user.policy
    return event.user.version + (policy.revision if policy else 0)


class UserSubscriber:
    __slots__ = ("_delivered", "_pending", "_size", "_wake", "overflowed", "user_ids")

    def __init__(self, user_ids: frozenset[int] | None) -> None:
        self.user_ids = user_ids  # None: the whole tenant
        self._pending: OrderedDict[int, list[UserEvent]] = OrderedDict()
        self._delivered: OrderedDict[int, int] = OrderedDict()  # user -> last version sent
        self._size = 0
        self._wake = asyncio.Event()
        self.overflowed = False

    def offer(self, event: UserEvent) -> None:
        queue = self._pending.get(event.user.id)
        if queue is None:
            self._pending[event.user.id] = [event]
            self._size += 1
        elif queue[-1].coalescable:
            queue[-1] = event  # the newer state supersedes an unsent progress update
        elif len(queue) < MAX_PENDING_PER_USER:
            queue.append(event)
            self._size += 1
        else:
            self.overflowed = True
        if self._size > MAX_PENDING:
            self.overflowed = True
        self._wake.set()

    async def next_batch(self) -> list[UserEvent]:
        """Waits for events; returns one user's pending events in version order."""
        while not self._pending:
            if self.overflowed:
                raise SubscriberOverflow
            self._wake.clear()
            await self._wake.wait()
        if self.overflowed:
            raise SubscriberOverflow
        user_id, events = self._pending.popitem(last=False)
        self._size -= len(events)
        fresh = []
        for event in events:
            version = public_version(event)
            if version > self._delivered.get(user_id, 0):
                self._delivered[user_id] = version
                self._delivered.move_to_end(user_id)
                fresh.append(event)
        while len(self._delivered) > MAX_TRACKED_VERSIONS:
            self._delivered.popitem(last=False)
        return fresh
