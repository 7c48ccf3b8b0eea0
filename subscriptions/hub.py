"""Fan-out: one broadcast subscription per process and tenant, routed in memory to many
WebSocket subscribers (never one broker subscription per browser).

Per-event work is routing only: events carry the user's state, so delivering one to many
subscribers touches no database. Progress of one user is coalesced to about 4 events a second
before fan-out; start and finish pass at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from app.db.engine import Database
from app.events import PolicyEvent, UserEvent, channel_for, decode
from subscriptions.metrics_feed import MetricsFeed, MetricsSubscriber
from subscriptions.policy_changes import users_of_policy
from subscriptions.subscriber import UserSubscriber

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 0.25  # seconds between progress events of one user


class TenantFeed:
    def __init__(self, hub: Hub, tenant_id: int) -> None:
        self.hub = hub
        self.tenant_id = tenant_id
        self.by_user: dict[int, set[UserSubscriber]] = {}
        self.everything: set[UserSubscriber] = set()
        self.metrics = MetricsFeed(hub.db, tenant_id)
        self._last_progress: dict[int, float] = {}
        self._held: dict[int, UserEvent] = {}
        self._task = asyncio.create_task(self._listen(), name=f"feed-{tenant_id}")
        self._ready = asyncio.Event()

    @property
    def idle(self) -> bool:
        return not self.by_user and not self.everything and not self.metrics.subscribers

    async def wait_ready(self) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def close(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        await self.metrics.close()

    async def _listen(self) -> None:
        async with self.hub.broadcast.subscribe(channel_for(self.tenant_id)) as events:
            self._ready.set()
            async for message in events:
                if message is None:
                    continue
                try:
                    await self._route(decode(message.message))
                except Exception:
                    log.exception("could not route an event of tenant %s", self.tenant_id)

    async def _route(self, event: UserEvent | PolicyEvent) -> None:
        self.metrics.changed()
        if isinstance(event, PolicyEvent):
            watched = set(self.by_user)
            if watched:
                for update in await users_of_policy(self.hub.db, event.policy, watched):
                    self._deliver(update)
            return
        user_id = event.user.id
        if event.kind == "progress":
            now = time.monotonic()
            due = self._last_progress.get(user_id, 0.0) + PROGRESS_INTERVAL
            if now < due:
                if user_id not in self._held:
                    asyncio.get_running_loop().call_later(due - now, self._release, user_id)
                self._held[user_id] = event
                return
            self._last_progress[user_id] = now
        else:
            self._held.pop(user_id, None)  # the lifecycle event carries newer state
            if event.kind == "finished":
                self._last_progress.pop(user_id, None)
        self._deliver(event)

    def _release(self, user_id: int) -> None:
        event = self._held.pop(user_id, None)
        if event is not None:
            self._last_progress[user_id] = time.monotonic()
            self._deliver(event)

    def _deliver(self, event: UserEvent) -> None:
        for subscriber in self.by_user.get(event.user.id, ()):
            subscriber.offer(event)
        for subscriber in self.everything:
            subscriber.offer(event)

    def add(self, subscriber: UserSubscriber) -> None:
        if subscriber.user_ids is None:
            self.everything.add(subscriber)
        else:
            for user_id in subscriber.user_ids:
                self.by_user.setdefault(user_id, set()).add(subscriber)

    def remove(self, subscriber: UserSubscriber) -> None:
        self.everything.discard(subscriber)
        for user_id in subscriber.user_ids or ():
            watchers = self.by_user.get(user_id)
            if watchers is not None:
                watchers.discard(subscriber)
                if not watchers:
                    del self.by_user[user_id]


class Hub:
    def __init__(self, broadcast: Any, db: Database) -> None:
        self.broadcast = broadcast
        self.db = db
        self._feeds: dict[int, TenantFeed] = {}
        self._lock = asyncio.Lock()

    async def _feed(self, tenant_id: int) -> TenantFeed:
        async with self._lock:
            feed = self._feeds.get(tenant_id)
            if feed is None:
                feed = self._feeds[tenant_id] = TenantFeed(self, tenant_id)
        await feed.wait_ready()
        return feed

    async def _release(self, tenant_id: int) -> None:
        async with self._lock:
            feed = self._feeds.get(tenant_id)
            if feed is not None and feed.idle:
                del self._feeds[tenant_id]
                await feed.close()

    @asynccontextmanager
    async def users(
        self, tenant_id: int, user_ids: frozenset[int] | None
    ) -> AsyncIterator[UserSubscriber]:
        feed = await self._feed(tenant_id)
        subscriber = UserSubscriber(user_ids)
        feed.add(subscriber)
        try:
            yield subscriber
        finally:
            feed.remove(subscriber)
            await self._release(tenant_id)

    @asynccontextmanager
    async def metrics(self, tenant_id: int) -> AsyncIterator[MetricsSubscriber]:
        feed = await self._feed(tenant_id)
        subscriber = await feed.metrics.add()
        try:
            yield subscriber
        finally:
            feed.metrics.remove(subscriber)
            await self._release(tenant_id)

    async def close(self) -> None:
        async with self._lock:
            feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.close()

    def stats(self) -> dict[str, int]:
        return {
            "tenants": len(self._feeds),
            "user_subscribers": sum(
                len(f.everything) + len({s for subs in f.by_user.values() for s in subs})
                for f in self._feeds.values()
            ),
        }
