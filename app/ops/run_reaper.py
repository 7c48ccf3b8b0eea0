"""The reaper: a background task in each `serve` process that ends runs whose worker went
silent for SYNCSTATUS_RUN_TIMEOUT_SECONDS (app.lifecycle.timeouts holds the rule and the
transaction). Every ~30 s (half the timeout when that is shorter), with jitter so several
processes do not all look at once, it ends the silent runs in batches of at most 100, each
batch one short write transaction whose events are published after its commit, then logs
the batch and counts it in syncstatus_runs_timed_out_total. After a full batch it waits as long
as the batch took: when many runs time out at once (a fleet of workers gone), workers' own
writes get at least half of the writer's time meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection

from app.domain.views import RunView
from app.events.messages import Event, Publisher
from app.lifecycle import timeouts
from app.ops.tasks import running
from app.store.engine import Database
from app.store.unit_of_work import write

log = logging.getLogger(__name__)
MAX_INTERVAL_SECONDS = 30.0
JITTER = 0.25  # each wait is the interval times 1 ± this
MIN_PAUSE_BETWEEN_BATCHES = 0.01  # lets queued writes go first


def interval_for(timeout_seconds: float) -> float:
    """How often the reaper looks: every 30 s, or twice per timeout when that is shorter."""
    return min(MAX_INTERVAL_SECONDS, timeout_seconds / 2)


async def end_silent_runs(
    db: Database,
    publisher: Publisher,
    timeout_seconds: float,
    *,
    now: int | None = None,
    telemetry: Any = None,
    on_ended: Callable[[], None] | None = None,
    limit: int = timeouts.BATCH,
) -> list[RunView]:
    """Ends every run silent for longer than the timeout (at `now`, or the clock), one
    transaction per `limit` runs; the runs ended."""
    ended: list[RunView] = []
    while True:

        def batch(conn: Connection, at: int) -> tuple[timeouts.Ended, list[Event]]:
            return timeouts.end_silent_runs(conn, at, timeout_seconds, limit)

        started = time.perf_counter()
        result = await write(db, publisher, batch, now=now)
        took = time.perf_counter() - started
        if result.runs:
            ended.extend(result.runs)
            if telemetry is not None:
                telemetry.runs_timed_out.inc(len(result.runs))
            if on_ended is not None:
                on_ended()  # webhook deliveries were queued with the finishes
            log.info(
                "ended runs whose worker went silent",
                extra={
                    "runs": len(result.runs),
                    "timeout_seconds": timeout_seconds,
                    "error_code": timeouts.WORKER_LOST,
                    "tenants": len({run.tenant_id for run in result.runs}),
                },
            )
        # Fewer candidates than the limit: none left. Candidates but none ended (all reported
        # or finished meanwhile, or locked by another reaper): the next round looks again.
        if result.candidates < limit or not result.runs:
            return ended
        await asyncio.sleep(max(MIN_PAUSE_BETWEEN_BATCHES, took))


async def _reap_forever(
    db: Database,
    publisher: Publisher,
    timeout_seconds: float,
    telemetry: Any,
    on_ended: Callable[[], None] | None,
) -> None:
    interval = interval_for(timeout_seconds)
    while True:
        await asyncio.sleep(interval * random.uniform(1 - JITTER, 1 + JITTER))
        try:
            await end_silent_runs(
                db, publisher, timeout_seconds, telemetry=telemetry, on_ended=on_ended
            )
        except Exception:
            # An outage, a lock timeout or a deadlock victim: the next round tries again.
            log.exception("ending runs whose worker went silent failed")


@asynccontextmanager
async def running_reaper(
    db: Database,
    publisher: Publisher,
    timeout_seconds: float,
    telemetry: Any = None,
    on_ended: Callable[[], None] | None = None,
) -> AsyncIterator[None]:
    """The background reaper for the block (nothing when timeout_seconds is 0)."""
    if timeout_seconds <= 0:
        yield
        return
    work = _reap_forever(db, publisher, timeout_seconds, telemetry, on_ended)
    async with running(work, "silent-runs-reaper"):
        yield


__all__ = ["end_silent_runs", "interval_for", "running_reaper"]
