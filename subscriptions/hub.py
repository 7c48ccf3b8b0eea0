"""Fan-out: one broadcast subscription per process and tenant, routed in memory to many
WebSocket subscribers (never one broker subscription per browser).

Per-event work is routing only: events carry the user's state, so delivering one to many
subscribers touches no database. Progress of one user is coalesced to about 4 events a second
before fan-out; start and finish pass at once. The few events that do not carry the state
(a policy change stands for all its users; an event too big for the broker is a reference)
cost one query per process, not one per subscriber.

The broker keeps no log of past events, so with any broker but memory:// (Hub.replay) the
database does: each tenant event has a gap-free sequence in the event log (app.events.event_log)
and each feed remembers the last one it delivered. A message after a gap, a lost broker
connection and its return, and a quiet spell (a lost last event) make the feed read what it
missed from the log, in order; a message already delivered is dropped. While the broker is down
the feed reads the log every OUTAGE_POLL seconds, so subscriptions go on; if the broker stays
away longer than the grace (SYNCSTATUS_BROKER_GRACE_SECONDS), or the log no longer holds what
was missed, the explicit signal applies: every acknowledged connection ends its subscriptions
with SERVICE_UNAVAILABLE and closes with 1013 (broker_lost), new ones are refused until the
broker is back (broker_up), and clients refetch on reconnecting. memory:// (one process, no
log) cannot lose a message, and without the log a lost broker signals at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from contextlib import suppress
from typing import Any, Protocol

from app.events import event_log
from app.events.messages import (
    LIFECYCLE_KINDS,
    Message,
    PolicyEvent,
    PolicyRef,
    UserEvent,
    UserRef,
    UsersRequested,
    channel_for,
    decode,
    decode_sequenced,
)
from app.ops.outage import is_outage
from app.store.engine import Database
from subscriptions.metrics_feed import MetricsFeed, MetricsSubscriber
from subscriptions.policy_changes import (
    load_policy,
    load_user_event,
    requested_users,
    users_of_policy,
)
from subscriptions.sequence import SequenceTracker, Verdict
from subscriptions.shared import SharedExecution
from subscriptions.subscriber import MAX_PENDING, MERGED, UserIds, UserSubscriber

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.25  # seconds between progress events of one user
READY_TIMEOUT = 10.0
SMALL_WATCHERS = 8  # watchers of one user kept in a tuple; more in a set
IDLE_POLL = 5.0  # seconds without a message before a feed looks in the log (a lost last event)
OUTAGE_POLL = 1.0  # seconds between looks in the log while the broker is down
DEFAULT_GRACE = 60.0  # seconds subscriptions go on without the broker
# A bulk request's transaction that made more users due than this: whole-tenant subscribers
# refetch, rather than every process loading thousands of users per transaction.
REQUESTED_STATES_MAX = 500


def _dropped(broadcast: Any, events: Any) -> int:
    """Events the broadcast layer discarded for this feed (its bounded queues were full)."""
    queue = getattr(events, "_queue", None)
    backend = getattr(broadcast, "backend", None)
    return int(getattr(queue, "dropped", 0)) + int(getattr(backend, "dropped", 0))


class BrokerSocket(Protocol):
    async def close_unavailable(self) -> None:
        """Ends the connection's subscriptions with SERVICE_UNAVAILABLE, closes it with 1013;
        must not raise."""
        ...


class TenantFeed:
    def __init__(self, hub: Hub, tenant_id: int) -> None:
        self.hub = hub
        self.tenant_id = tenant_id
        # Who watches each user: a tuple while few do (48 bytes for one, against 216 for a
        # set: most users are on one open page), a set beyond SMALL_WATCHERS.
        self.by_user: dict[int, tuple[UserSubscriber, ...] | set[UserSubscriber]] = {}
        self.everything: set[UserSubscriber] = set()
        self.metrics = MetricsFeed(hub.db, tenant_id)
        self.joining = 0  # subscribers between finding this feed and being added to it
        self.subscriber_count = 0
        self._last_progress: dict[int, float] = {}
        self.held: dict[int, UserEvent] = {}
        # With the event log: the last sequence delivered here; _order keeps the broker's
        # messages and the log's rows from interleaving.
        self.sequence: SequenceTracker | None = None
        self._order = asyncio.Lock()
        self._wake = asyncio.Event()
        self._last_message = time.monotonic()
        self._poller: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._listen(), name=f"feed-{tenant_id}")

    @property
    def idle(self) -> bool:
        return not self.joining and not self.subscriber_count and not self.metrics.subscribers

    async def wait_ready(self) -> None:
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, self._task}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if ready in done:
            return
        if not self._task.done():
            # TimeoutError: an outage (app/ops/outage.py), so the subscriber is told to retry.
            raise TimeoutError(f"the event feed of tenant {self.tenant_id} did not start in time")
        failure = None if self._task.cancelled() else self._task.exception()
        # Chained, so that a database or broker outage reads as one (1013 or
        # SERVICE_UNAVAILABLE), not as a bug that drops the socket.
        raise RuntimeError(f"the event feed of tenant {self.tenant_id} did not start") from failure

    async def close(self) -> None:
        for task in (self._poller, self._task):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        await self.metrics.close()

    def wake(self) -> None:
        """Look in the event log now (the broker was lost or is back)."""
        self._wake.set()

    async def _listen(self) -> None:
        try:
            await self._receive()
        except Exception as error:
            # Never leave subscribers waiting on a dead feed: they get an error and resubscribe
            # (to a new feed, as this one is dropped).
            if is_outage(error):
                log.warning("the event feed of tenant %s failed: %r", self.tenant_id, error)
            else:
                log.exception("the event feed of tenant %s failed", self.tenant_id)
            self.hub.discard(self)
            for subscriber in self.user_subscribers():
                subscriber.overflow()
            if self._poller is not None:
                self._poller.cancel()  # a dead feed reads no log
            raise

    async def _receive(self) -> None:
        broadcast = self.hub.broadcast
        async with broadcast.subscribe(channel_for(self.tenant_id)) as events:
            if self.hub.replay:
                # Read after subscribing: an event committed since arrives, or is in the log.
                self.sequence = SequenceTracker(
                    await event_log.last_seq(self.hub.db, self.tenant_id)
                )
                self._poller = asyncio.create_task(self._poll(), name=f"feed-{self.tenant_id}-log")
            self._ready.set()
            dropped = _dropped(broadcast, events)
            async for message in events:
                if message is None:
                    continue
                now_dropped = _dropped(broadcast, events)
                if now_dropped != dropped:
                    self._count_dropped("broker_queue", now_dropped - dropped)
                    dropped = now_dropped
                    if self.sequence is None:  # else the next gap or poll reads them back
                        self._lost_events()
                try:
                    seq, event = decode_sequenced(message.message)
                    if seq is None or self.sequence is None:
                        await self._route(event)
                    else:
                        async with self._order:
                            await self._accept(seq, event)
                except Exception:
                    log.exception("could not route an event of tenant %s", self.tenant_id)

    async def _accept(self, seq: int, event: Message) -> None:
        """A logged event from the broker: delivered unless it was already; after a gap, what
        is missing is read from the log first (and this event with it)."""
        sequence = self.sequence
        assert sequence is not None
        self._last_message = time.monotonic()
        verdict = sequence.check(seq)
        if verdict is Verdict.GAP:
            await self._catch_up()
            verdict = sequence.check(seq)
        if verdict is Verdict.DUPLICATE:
            sequence.duplicates += 1
            return
        if sequence.advance(seq):  # not in the log (pruned, or not visible here yet)
            self._lost_events()
        await self._route(await self._logged(seq, event))

    async def _logged(self, seq: int, event: Message) -> Message:
        """A reference (an event too big for the broker) as it was logged, whole: loading the
        user's current state instead would skip the start when the finish followed quickly."""
        if isinstance(event, UserRef) and (event.user_id in self.by_user or self.everything):
            body = await event_log.read_at(self.hub.db, self.tenant_id, seq)
            if body is not None:
                return decode(body)
        return event

    async def _catch_up(self) -> None:
        """Delivers the logged events after the last one delivered, in order (under _order)."""
        sequence = self.sequence
        assert sequence is not None
        while True:
            rows = await event_log.read_after(self.hub.db, self.tenant_id, sequence.last)
            for seq, body in rows:
                if sequence.advance(seq):
                    self._lost_events()  # older than the log's bound: subscribers refetch
                sequence.replayed += 1
                try:
                    await self._route(decode(body))
                except Exception:
                    log.exception("could not route an event of tenant %s", self.tenant_id)
            if len(rows) < event_log.REPLAY_BATCH:
                return

    async def _poll(self) -> None:
        """Looks in the log while the broker is down, when woken (broker lost or back), and
        after IDLE_POLL seconds without a message (a lost publish of the last event)."""
        while True:
            interval = OUTAGE_POLL if not self.hub.broker_up else IDLE_POLL
            with suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            woken = self._wake.is_set()
            self._wake.clear()
            quiet = time.monotonic() - self._last_message >= IDLE_POLL
            if not (woken or quiet or not self.hub.broker_up):
                continue
            try:
                async with self._order:
                    await self._catch_up()
            except Exception as error:  # the database unreachable too: try again later
                log.warning("could not read the event log of tenant %s: %s", self.tenant_id, error)
            if quiet:
                self._last_message = time.monotonic()

    def _lost_events(self) -> None:
        # Subscribers may have missed a start or finish: they must refetch, so tell them.
        log.warning("events of tenant %s were dropped; subscribers must refetch", self.tenant_id)
        for subscriber in self.user_subscribers():
            subscriber.overflow()
        self.metrics.changed()

    def _count_dropped(self, reason: str, events: int) -> None:
        telemetry = self.hub.telemetry
        if telemetry is not None and events > 0:
            telemetry.events_dropped.labels(reason).inc(events)

    def _count_coalesced(self, events: int) -> None:
        telemetry = self.hub.telemetry
        if telemetry is not None and events > 0:
            telemetry.events_coalesced.inc(events)

    def user_subscribers(self) -> set[UserSubscriber]:
        return {s for subs in self.by_user.values() for s in subs} | self.everything

    async def _route(self, event: Message) -> None:
        kind = event.kind if isinstance(event, UserEvent | UserRef) else None
        self.metrics.changed(run_moved=kind in LIFECYCLE_KINDS)
        if isinstance(event, PolicyRef):
            policy = await load_policy(self.hub.db, event.tenant_id, event.policy_id)
            if policy is None:
                return
            event = PolicyEvent(policy)
        if isinstance(event, PolicyEvent):
            await self._policy_changed(event)
            return
        if isinstance(event, UsersRequested):
            await self._users_requested(event)
            return
        if isinstance(event, UserRef):
            if event.user_id not in self.by_user and not self.everything:
                return  # nobody here watches the user: no query
            loaded = await load_user_event(self.hub.db, event.kind, event.tenant_id, event.user_id)
            if loaded is None:
                return
            event = loaded
        user_id = event.user.id
        if event.kind == "progress":
            now = time.monotonic()
            due = self._last_progress.get(user_id, 0.0) + PROGRESS_INTERVAL
            if now < due:
                if user_id not in self.held:
                    asyncio.get_running_loop().call_later(due - now, self._release, user_id)
                else:
                    self._count_coalesced(1)  # the held progress event is superseded
                self.held[user_id] = event
                return
            self._last_progress[user_id] = now
        else:
            self.held.pop(user_id, None)  # the lifecycle event carries newer state
            if event.kind == "finished":
                self._last_progress.pop(user_id, None)
        self._deliver(event)

    async def _policy_changed(self, event: PolicyEvent) -> None:
        if self.everything and event.policy.user_count > MAX_PENDING:
            # More users than a mailbox holds: whole-tenant subscribers refetch instead.
            for subscriber in self.everything:
                subscriber.overflow()
            if not self.by_user:
                return
            watched: list[int] | None = list(self.by_user)
        else:
            watched = None if self.everything else list(self.by_user)
        if watched == []:
            return
        async for updates in users_of_policy(self.hub.db, event.policy, watched):
            for update in updates:
                self.held.pop(update.user.id, None)
                self._deliver(update)

    async def _users_requested(self, event: UsersRequested) -> None:
        watched: list[int] | None = None
        if self.everything and event.count > REQUESTED_STATES_MAX:
            for subscriber in self.everything:
                subscriber.overflow()  # told to refetch
        if not self.everything or event.count > REQUESTED_STATES_MAX:
            first, last = event.first_id, event.last_id
            watched = [user_id for user_id in self.by_user if first <= user_id <= last]
            if not watched:
                return
        async for updates in requested_users(self.hub.db, event, watched):
            for update in updates:
                self.held.pop(update.user.id, None)
                self._deliver(update)

    def _release(self, user_id: int) -> None:
        event = self.held.pop(user_id, None)
        if event is not None:
            self._last_progress[user_id] = time.monotonic()
            self._deliver(event)

    def _deliver(self, event: UserEvent) -> None:
        coalesced = overflowed = 0
        for subscribers in (self.by_user.get(event.user.id, ()), self.everything):
            for subscriber in subscribers:
                outcome = subscriber.offer(event)  # the mailbox says what it did
                if outcome:
                    if outcome == MERGED:
                        coalesced += 1
                    else:
                        overflowed += 1
        self._count_coalesced(coalesced)
        self._count_dropped("subscriber_overflow", overflowed)

    def add(self, subscriber: UserSubscriber) -> None:
        self.subscriber_count += 1
        if subscriber.user_ids is None:
            self.everything.add(subscriber)
        else:
            for user_id in subscriber.user_ids:
                watchers = self.by_user.get(user_id, ())
                if isinstance(watchers, set):
                    watchers.add(subscriber)
                elif len(watchers) < SMALL_WATCHERS:
                    self.by_user[user_id] = (*watchers, subscriber)
                else:
                    self.by_user[user_id] = {*watchers, subscriber}

    def remove(self, subscriber: UserSubscriber) -> None:
        self.subscriber_count -= 1
        self.everything.discard(subscriber)
        for user_id in subscriber.user_ids or ():
            watchers = self.by_user.get(user_id)
            if isinstance(watchers, set):
                watchers.discard(subscriber)
                if not watchers:
                    del self.by_user[user_id]
            elif watchers is not None:
                left = tuple(w for w in watchers if w is not subscriber)
                if left:
                    self.by_user[user_id] = left
                else:
                    del self.by_user[user_id]


class Hub:
    def __init__(
        self,
        broadcast: Any,
        db: Database,
        telemetry: Any = None,
        *,
        replay: bool = False,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.broadcast = broadcast
        self.db = db
        self.telemetry = telemetry  # app.ops.telemetry.Telemetry, if any
        # Whether events carry event-log sequences (the Publisher's event_log), and how long
        # subscriptions go on while the broker is down.
        self.replay = replay
        self.grace = grace
        self._grace_timer: asyncio.TimerHandle | None = None
        self.shared = SharedExecution()
        self._feeds: dict[int, TenantFeed] = {}
        self._lock = asyncio.Lock()
        # Acknowledged connections, to tell when the broker is lost (weak: a socket that ends
        # without unwatching is not kept).
        self._sockets: weakref.WeakSet[BrokerSocket] = weakref.WeakSet()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def broker_up(self) -> bool:
        """Whether the broker's subscribe connection is up (memory:// always is)."""
        return bool(getattr(getattr(self.broadcast, "backend", None), "is_connected", True))

    def watch(self, socket: BrokerSocket) -> None:
        """Tell the socket when the broker is lost; at once if it is down already (it went down
        between the socket's check and its acknowledgement)."""
        if self.broker_up:
            self._sockets.add(socket)
        else:
            self._close_unavailable(socket)

    def unwatch(self, socket: BrokerSocket) -> None:
        self._sockets.discard(socket)

    def broker_lost(self) -> None:
        """The broker connection was lost (the backend's on_disconnect): events published from
        now until it is back do not arrive here. With the event log the feeds read them from
        there meanwhile, for up to the grace; without it, or after it, no subscription may
        carry on as if nothing happened."""
        if self.replay and self.grace > 0:
            log.warning(
                "broker connection lost: reading events from the event log for up to %gs",
                self.grace,
            )
            self._wake_feeds()
            if self._grace_timer is None:
                loop = asyncio.get_running_loop()
                self._grace_timer = loop.call_later(self.grace, self._grace_over)
            return
        self._end_subscriptions()

    def _grace_over(self) -> None:
        self._grace_timer = None
        if not self.broker_up:
            self._end_subscriptions()

    def _wake_feeds(self) -> None:
        for feed in self._feeds.values():
            feed.wake()

    def _end_subscriptions(self) -> None:
        sockets = list(self._sockets)
        self._sockets.clear()
        log.warning("broker connection lost: closing %d connection(s) with 1013", len(sockets))
        self._metrics_stale()
        for socket in sockets:
            self._close_unavailable(socket)

    def broker_back(self) -> None:
        """The broker connection is back (the backend's on_reconnect)."""
        if self.telemetry is not None:
            self.telemetry.broker_reconnects.inc()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self._wake_feeds()  # what was published before the resubscription is in the log
        self._metrics_stale()  # events published before the resubscription were missed

    def _metrics_stale(self) -> None:
        # Figures cached for new subscribers may miss lost events: read them again.
        for feed in self._feeds.values():
            feed.metrics.changed()

    def _close_unavailable(self, socket: BrokerSocket) -> None:
        # A task each: one slow socket holds up no other.
        task = asyncio.create_task(socket.close_unavailable(), name="close-unavailable")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _join(self, tenant_id: int) -> TenantFeed:
        """The tenant's feed, kept alive until the caller's _unjoin (even before it subscribed:
        a feed released in between would leave the new subscriber deaf)."""
        async with self._lock:
            feed = self._feeds.get(tenant_id)
            if feed is None:
                feed = self._feeds[tenant_id] = TenantFeed(self, tenant_id)
            feed.joining += 1
        try:
            await feed.wait_ready()
        except BaseException:
            await self._unjoin(feed)
            raise
        return feed

    async def _unjoin(self, feed: TenantFeed) -> None:
        feed.joining -= 1
        await self._release(feed)

    async def _release(self, feed: TenantFeed) -> None:
        if not feed.idle:
            return
        async with self._lock:
            if feed.idle and self._feeds.get(feed.tenant_id) is feed:
                del self._feeds[feed.tenant_id]
                await feed.close()

    async def add_users(
        self, tenant_id: int, user_ids: UserIds | None
    ) -> tuple[TenantFeed, UserSubscriber]:
        """A subscriber to the users' updates; give it back with remove_users()."""
        feed = await self._join(tenant_id)
        subscriber = UserSubscriber(user_ids)
        feed.add(subscriber)
        self._count("users", 1)
        await self._unjoin(feed)  # the subscriber keeps the feed now
        return feed, subscriber

    async def remove_users(self, feed: TenantFeed, subscriber: UserSubscriber) -> None:
        feed.remove(subscriber)
        self._count("users", -1)
        await self._release(feed)

    def _count(self, kind: str, change: int) -> None:
        if self.telemetry is not None:
            self.telemetry.subscriptions.labels(kind).inc(change)

    async def add_metrics(self, tenant_id: int) -> tuple[TenantFeed, MetricsSubscriber]:
        """A subscriber to the tenant's metrics, holding the current figures at once."""
        feed = await self._join(tenant_id)
        try:
            subscriber = MetricsSubscriber(await feed.metrics.current())
            feed.metrics.add(subscriber)
            self._count("metrics", 1)
        finally:
            await self._unjoin(feed)
        return feed, subscriber

    async def remove_metrics(self, feed: TenantFeed, subscriber: MetricsSubscriber) -> None:
        feed.metrics.remove(subscriber)
        self._count("metrics", -1)
        await self._release(feed)

    def discard(self, feed: TenantFeed) -> None:
        if self._feeds.get(feed.tenant_id) is feed:
            del self._feeds[feed.tenant_id]

    async def close(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        async with self._lock:
            feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.close()

    def stats(self) -> dict[str, int]:
        feeds = list(self._feeds.values())
        return {
            "tenants": len(feeds),
            "user_subscribers": sum(f.subscriber_count for f in feeds),
            "metrics_subscribers": sum(len(f.metrics.subscribers) for f in feeds),
            "pending_events": sum(s.pending for f in feeds for s in f.user_subscribers()),
            "held_progress": sum(len(f.held) for f in feeds),
            "shared_executions_reused": self.shared.hits,
            "shared_executions_run": self.shared.misses,
            "shared_frames_sent": self.shared.frames_sent,
            # With the event log: events read from it, broker messages dropped as already
            # delivered, events gone from it when needed (this process's feeds now open).
            "events_replayed": sum(f.sequence.replayed for f in feeds if f.sequence),
            "events_duplicate": sum(f.sequence.duplicates for f in feeds if f.sequence),
            "events_lost": sum(f.sequence.lost for f in feeds if f.sequence),
        }
