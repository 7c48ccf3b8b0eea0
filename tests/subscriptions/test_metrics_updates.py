"""syncMetricsUpdated: the metrics at once, then on change, at most about once a second."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from tests.conftest import Tenant
from tests.subscriptions.support import METRICS_UPDATES, Stream, Worker, add_users


def metrics(item: dict[str, Any]) -> dict[str, Any]:
    return item["syncMetricsUpdated"]


async def test_metrics_at_once_then_on_change(tenant: Tenant) -> None:
    _, (first, second) = await add_users(tenant, 2)
    worker = Worker(tenant)
    async with tenant.viewer.websocket() as session, Stream(session, METRICS_UPDATES) as stream:
        initial = metrics(await stream.next(within=5))
        assert initial["totalUsers"] == 2
        assert initial["usersWithActivePolicy"] == 2
        assert initial["syncsInProgress"] == 0
        run_id = await worker.start(first)
        running = await stream.until(lambda i: metrics(i)["syncsInProgress"] == 1)
        await worker.progress(run_id, 7)
        changed = await stream.until(lambda i: metrics(i)["changesLast24h"] == 7)
        await worker.finish(run_id, error_code="ERR_X")
        failed = await stream.until(lambda i: metrics(i)["failedSyncs"] == 1)
        # Nothing changes without events: no repeats of the same figures.
        quiet = await stream.quiet(2.0)
    assert metrics(failed[-1])["syncsInProgress"] == 0
    assert running and changed
    assert quiet == []
    del second


async def test_a_run_that_leaves_the_figures_as_they_were_is_still_sent(tenant: Tenant) -> None:
    """A failed user retried and failed again within the feed's second: the five figures end
    as they began, but the failure reasons moved, and the page refreshes those on a push."""
    _, (busy, retried) = await add_users(tenant, 2)
    worker = Worker(tenant)
    await worker.finish(await worker.start(retried), error_code="ERR_BEFORE")
    async with tenant.viewer.websocket() as session, Stream(session, METRICS_UPDATES) as stream:
        await stream.next(within=5)
        await worker.start(busy)
        [*_, before] = await stream.until(lambda i: metrics(i)["syncsInProgress"] == 1)
        # The feed sent and now waits about a second before it reads again: both land in it.
        await worker.finish(await worker.start(retried), error_code="ERR_AFTER")
        await stream.until(lambda i: figures(i) == figures(before), within=5)


def figures(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics(item).items() if k != "asOf"}


async def test_metrics_are_sent_at_most_about_once_a_second(tenant: Tenant) -> None:
    _, ids = await add_users(tenant, 6)
    worker = Worker(tenant)
    async with tenant.viewer.websocket() as session, Stream(session, METRICS_UPDATES) as stream:
        await stream.next(within=5)
        first = len(stream.arrivals)
        started = time.monotonic()
        while time.monotonic() - started < 4.0:  # a steady stream of changes for 4 s
            for user_id in ids:
                await worker.run(user_id, progress_reports=1)
        await asyncio.sleep(1.2)
        received = stream.arrivals[first:]
    assert 2 <= len(received) <= 7, received
    # Arrival times on a loaded 2-core machine carry some jitter of their own; unpaced metrics
    # would come milliseconds apart (several changes per run, six runs per round).
    gaps = [b - a for a, b in itertools.pairwise(received)]
    assert all(gap > 0.6 for gap in gaps), gaps
