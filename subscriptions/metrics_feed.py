"""Metrics for one tenant: computed once per change for all its subscribers, at most about
once a second, and again each minute (the 24-hour window moves even without events)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from app.db.engine import Database
from app.reads.metrics import sync_metrics
from app.timeutil import now_micros
from app.views import MetricsView

log = logging.getLogger(__name__)
MIN_INTERVAL = 1.0
REFRESH_INTERVAL = 60.0


class MetricsSubscriber:
    __slots__ = ("_wake", "latest")

    def __init__(self, initial: MetricsView) -> None:
        self.latest: MetricsView | None = initial
        self._wake = asyncio.Event()
        self._wake.set()

    def offer(self, metrics: MetricsView) -> None:
        self.latest = metrics  # only the newest figures matter
        self._wake.set()

    async def next(self) -> MetricsView:
        while self.latest is None:
            self._wake.clear()
            await self._wake.wait()
        metrics, self.latest = self.latest, None
        return metrics


def _figures(m: MetricsView) -> tuple[int, ...]:
    return (
        m.users_with_active_policy,
        m.changes_last_24h,
        m.syncs_in_progress,
        m.failed_syncs,
        m.total_users,
    )


class MetricsFeed:
    def __init__(self, db: Database, tenant_id: int) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.subscribers: set[MetricsSubscriber] = set()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last: MetricsView | None = None

    async def _read(self) -> MetricsView:
        async with self.db.read() as session:
            return await sync_metrics(session, self.tenant_id, now_micros())

    async def add(self) -> MetricsSubscriber:
        subscriber = MetricsSubscriber(await self._read())  # the metrics at once
        self.subscribers.add(subscriber)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"metrics-{self.tenant_id}")
        return subscriber

    def remove(self, subscriber: MetricsSubscriber) -> None:
        self.subscribers.discard(subscriber)

    def changed(self) -> None:
        if self.subscribers:
            self._dirty.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout=REFRESH_INTERVAL)
            self._dirty.clear()
            try:
                metrics = await self._read()
            except Exception:
                log.exception("could not read metrics of tenant %s", self.tenant_id)
            else:
                if self._last is None or _figures(metrics) != _figures(self._last):
                    self._last = metrics
                    for subscriber in self.subscribers:
                        subscriber.offer(metrics)
            await asyncio.sleep(MIN_INTERVAL)
