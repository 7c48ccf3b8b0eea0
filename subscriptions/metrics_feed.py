"""Metrics for one tenant: computed once per change for all its subscribers, at most about
once a second, and again each minute (the 24-hour window moves even without events).

Figures equal to the last sent are not sent again, unless a run started or finished since: a
start and a finish in one second leave the five figures as they were, yet the failure reasons
and the trends moved, and the page refreshes those when the metrics arrive.

A new subscriber gets the metrics at once: the figures last sent when nothing changed since,
otherwise one read shared by everyone joining at the same moment (a thousand dashboards
opening together cost one query, not a thousand).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress

from app.domain.timeutil import now_micros
from app.domain.views import MetricsView
from app.ops.outage import OutageLog
from app.reads.metrics import sync_metrics
from app.store.engine import Database

log = logging.getLogger(__name__)
MIN_INTERVAL = 1.0
REFRESH_INTERVAL = 60.0
OFFER_CHUNK = 25


class MetricsSubscriber:
    __slots__ = ("latest", "listener")

    def __init__(self, initial: MetricsView) -> None:
        self.latest: MetricsView | None = initial
        # Called on new figures (subscriptions/live.py: its connection then sends them).
        self.listener: Callable[[], None] | None = None

    def offer(self, metrics: MetricsView) -> None:
        self.latest = metrics  # only the newest figures matter
        if self.listener is not None:
            self.listener()

    def take(self) -> MetricsView | None:
        """The newest figures not taken yet, without waiting."""
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
        self._failures = OutageLog(log, f"reading the metrics of tenant {tenant_id}")
        self._sent: MetricsView | None = None  # what subscribers were last given
        self._sent_at = 0.0
        self._changed_since_sent = True
        self._runs_moved = False  # a run started or finished since the last send
        self._joining: asyncio.Task[MetricsView] | None = None

    async def _read(self) -> MetricsView:
        async with self.db.read() as session:
            return await sync_metrics(session, self.tenant_id, now_micros())

    async def current(self) -> MetricsView:
        """The metrics for a new subscriber."""
        fresh = time.monotonic() - self._sent_at < REFRESH_INTERVAL
        if self._sent is not None and not self._changed_since_sent and fresh:
            return self._sent
        if self._joining is None:
            self._joining = asyncio.create_task(self._read(), name=f"metrics-{self.tenant_id}")
            self._joining.add_done_callback(self._joined)
        # Shielded: one joiner giving up must not cancel the read the others wait for.
        return await asyncio.shield(self._joining)

    def _joined(self, task: asyncio.Task[MetricsView]) -> None:
        if self._joining is task:
            self._joining = None
        if not task.cancelled():
            task.exception()  # retrieved here; the joiners got it raised

    def add(self, subscriber: MetricsSubscriber) -> None:
        self.subscribers.add(subscriber)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"metrics-feed-{self.tenant_id}")

    def remove(self, subscriber: MetricsSubscriber) -> None:
        self.subscribers.discard(subscriber)

    def changed(self, *, run_moved: bool = False) -> None:
        self._changed_since_sent = True
        self._runs_moved = self._runs_moved or run_moved
        if self.subscribers:
            self._dirty.set()

    async def close(self) -> None:
        for task in (self._task, self._joining):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    async def _offer_to_all(self, metrics: MetricsView) -> None:
        """Wakes the subscribers a few at a time: each wake-up is a send, and a thousand of
        them in one go would hold back the user events that arrive meanwhile (~0.2 s)."""
        subscribers = list(self.subscribers)
        for start in range(0, len(subscribers), OFFER_CHUNK):
            if start:
                await asyncio.sleep(0)  # let the chunk's sends and any other work run
            for subscriber in subscribers[start : start + OFFER_CHUNK]:
                subscriber.offer(metrics)

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_INTERVAL):  # no task per wait, as wait_for
                    await self._dirty.wait()
            self._dirty.clear()
            self._changed_since_sent = False  # changes from here on set it again
            runs_moved, self._runs_moved = self._runs_moved, False
            previous = self._sent
            try:
                metrics = await self._read()
            except Exception as error:
                self._failures.failed(error)
                self._changed_since_sent = True
                self._runs_moved = self._runs_moved or runs_moved
            else:
                self._failures.succeeded()
                self._sent, self._sent_at = metrics, time.monotonic()
                same = previous is not None and _figures(metrics) == _figures(previous)
                if runs_moved or not same:
                    await self._offer_to_all(metrics)
            await asyncio.sleep(MIN_INTERVAL)
