"""One subscriber's bounded mailbox: coalesced state per user, start and finish never dropped.

A slow reader gets the latest state per user instead of an ever-growing queue. Only a reader
so far behind that even lifecycle events pile up past the bound is cut off (the client then
resubscribes and refetches); everyone else is unaffected. Small when idle: an open dashboard
holds one of these per page, and thousands of them per process.

A connection's mailboxes also share a byte budget (Backlog): a socket that stops reading must
not hold more than that, whatever the event rate and the tenant's size. Over it, they keep only
the latest state per user (a start or finish is then represented by that newer state, which
carries the newest version); if even that is over, the biggest mailboxes are cut off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.domain import views
from app.events.messages import UserEvent

# The users a subscriber watches: distinct ids (subscriptions/streams.py parses them).
UserIds = tuple[int, ...]
MAX_PENDING_PER_USER = 8
MAX_PENDING = 5_000
MAX_TRACKED_VERSIONS = 20_000
# The budget counts a waiting event at its subscription's last message size (what sending it
# will write); before the first message, at this. Never less than the floor: about what a
# waiting entry itself takes (its slot in the mailbox's dict and list, ~150 bytes).
DEFAULT_ENTRY_BYTES = 512
MIN_ENTRY_BYTES = 256
# What offer() did with an event, for the fan-out's counters.
QUEUED, MERGED, OVERFLOWED = 0, 1, 2


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind (or missed events); it must refetch."""


def public_version(event: UserEvent) -> int:
    return views.public_version(event.user.version, event.user.policy)


class Backlog:
    """The byte budget one connection's mailboxes share: the events they hold, each counted at
    its subscription's last message size. Over ``limit`` they keep only the latest state per
    user until half of it is sent; if that is still over, the biggest are cut off (an error,
    then the client refetches). The message being written is not counted: one at a time."""

    __slots__ = ("coalescing", "limit", "mailboxes", "queued", "telemetry")

    def __init__(self, limit: int, telemetry: Any = None) -> None:
        self.limit = limit
        self.queued = 0  # bytes
        self.coalescing = False
        self.mailboxes: set[UserSubscriber] = set()
        self.telemetry = telemetry  # app.telemetry.Telemetry, if any

    def over(self) -> None:
        """Called by a mailbox that grew past the limit."""
        if not self.coalescing:
            self.coalescing = True
            dropped = sum(mailbox.coalesce() for mailbox in self.mailboxes)
            if self.telemetry is not None and dropped:
                self.telemetry.events_coalesced.inc(dropped)
        while self.queued > self.limit:
            biggest = max(self.mailboxes, key=lambda m: m.queued_bytes)
            if not biggest.pending:
                break
            biggest.overflow()
            if self.telemetry is not None:
                self.telemetry.events_dropped.labels("slow_reader").inc()

    def drained(self) -> None:
        if self.coalescing and self.queued <= self.limit // 2:
            self.coalescing = False


class UserSubscriber:
    __slots__ = (
        "_delivered",
        "_pending",
        "_size",
        "backlog",
        "entry_bytes",
        "listener",
        "overflowed",
        "user_ids",
    )

    def __init__(self, user_ids: UserIds | None) -> None:
        self.user_ids = user_ids  # None: the whole tenant
        self._pending: dict[int, list[UserEvent]] = {}  # in arrival order of users
        self._delivered: dict[int, int] | None = None  # user -> last version sent
        self._size = 0
        # Called when events arrive (subscriptions/live.py: its connection then sends them).
        self.listener: Callable[[], None] | None = None
        self.overflowed = False
        self.backlog: Backlog | None = None  # the connection's budget, if it keeps one
        self.entry_bytes = DEFAULT_ENTRY_BYTES

    @property
    def pending(self) -> int:
        """Events waiting to be sent (bounded by MAX_PENDING and by the connection's budget)."""
        return self._size

    @property
    def queued_bytes(self) -> int:
        return self._size * self.entry_bytes

    def join(self, backlog: Backlog) -> None:
        """Counts this mailbox in the connection's budget."""
        self.backlog = backlog
        backlog.mailboxes.add(self)
        backlog.queued += self.queued_bytes
        if backlog.coalescing:
            self.coalesce()
        if backlog.queued > backlog.limit:
            backlog.over()

    def leave(self) -> None:
        backlog, self.backlog = self.backlog, None
        if backlog is not None:
            backlog.mailboxes.discard(self)
            backlog.queued -= self.queued_bytes

    def measured(self, message_bytes: int) -> None:
        """The size of a message just sent for this subscription: the estimate of the rest."""
        message_bytes = max(message_bytes, MIN_ENTRY_BYTES)
        backlog = self.backlog
        if backlog is not None:
            backlog.queued += self._size * (message_bytes - self.entry_bytes)
        self.entry_bytes = message_bytes
        if backlog is not None and backlog.queued > backlog.limit:
            backlog.over()

    def _resize(self, change: int) -> None:
        self._size += change
        if self.backlog is not None:
            self.backlog.queued += change * self.entry_bytes

    def offer(self, event: UserEvent) -> int:
        """Queues the event; QUEUED, MERGED (into a waiting state) or OVERFLOWED (just now)."""
        if self.overflowed:
            return QUEUED  # cut off: it refetches, so nothing is kept (counted when it happened)
        outcome = QUEUED
        queue = self._pending.get(event.user.id)
        backlog = self.backlog
        if queue is None:
            self._pending[event.user.id] = [event]
            self._resize(1)
        elif public_version(event) <= public_version(queue[-1]):
            return MERGED  # a newer state is waiting
        elif backlog is not None and backlog.coalescing:
            # Over the connection's budget: the newest state stands for all that waits.
            self._resize(1 - len(queue))
            queue[:] = [event]
            outcome = MERGED
        elif queue[-1].coalescable:
            queue[-1] = event  # the newer state supersedes an unsent progress update
            outcome = MERGED
        elif len(queue) < MAX_PENDING_PER_USER:
            queue.append(event)
            self._resize(1)
        else:
            self._cut_off()
        if self._size > MAX_PENDING:
            self._cut_off()
        if self.overflowed:
            outcome = OVERFLOWED  # counted here; a cut-off for the budget is counted there
        elif backlog is not None and backlog.queued > backlog.limit:
            backlog.over()
        self._wake()
        return outcome

    def coalesce(self) -> int:
        """Keeps only the latest state per user; returns how many events that dropped."""
        dropped = 0
        for queue in self._pending.values():
            if len(queue) > 1:
                dropped += len(queue) - 1
                del queue[:-1]
        self._resize(-dropped)
        return dropped

    def overflow(self) -> None:
        """Cut the subscriber off: events it needed were lost or are too many to send."""
        self._cut_off()
        self._wake()

    def _cut_off(self) -> None:
        # What waits is of no use to a subscriber that must refetch: free it at once.
        self.overflowed = True
        self._pending.clear()
        self._resize(-self._size)

    def _wake(self) -> None:
        if self.listener is not None:
            self.listener()

    def take_batch(self) -> list[UserEvent]:
        """One user's pending events in version order, without waiting ([] if none)."""
        if self.overflowed:
            raise SubscriberOverflow
        if not self._pending:
            return []
        user_id = next(iter(self._pending))
        events = self._pending.pop(user_id)
        self._resize(-len(events))
        if self.backlog is not None:
            self.backlog.drained()
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
