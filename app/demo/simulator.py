"""Simulated sync workers inside the server process (`syncstatus demo`).

A background task that works like a real worker, through the same run lifecycle: it claims due
runs and reports progress, item failures and run failures as app.demo.simulation plans them, each
write its own transaction (app.store.unit_of_work.write) so events go out after commit. It keeps a
handful of runs in flight in every tenant with an active policy: when nothing is due it asks for
a sync of a random user ("sync now"), and it takes over runs left RUNNING before it started (the
seed's, or those of a previous process), so no user stays in progress for good. Stopped by
cancellation; runs in flight then stay RUNNING and the next start takes them over. A write
already under way is not cancelled (app.store.unit_of_work.write is shielded), so the stop waits
for it: nothing the simulator began changes the database or publishes after it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select

from app.demo.simulation import (
    MAX_IN_FLIGHT,
    STARTS_PER_TICK,
    ItemFailure,
    RunPlan,
    Step,
    plan_run,
    rng_for,
)
from app.domain.errors import Conflict, NotFound
from app.domain.statuses import RunState
from app.domain.timeutil import now_micros
from app.domain.validation import FailedItemInput
from app.domain.views import RunView
from app.events.messages import Event, Publisher
from app.lifecycle import transitions
from app.ops.tasks import cancel_and_wait
from app.store.engine import Database
from app.store.models import Policy, SyncRun, SyncUser
from app.store.unit_of_work import Change, write

log = logging.getLogger("syncstatus.simulator")
T = TypeVar("T")
TICK_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
WRITE_ATTEMPTS = 3
MAX_ORPHANS = 1000


class Simulator:
    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        speed: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._max_in_flight = max_in_flight
        self._speed = speed
        self._seed = seed
        self._rng = random.Random(seed)
        self._started_at = now_micros()
        self._runs: dict[int, asyncio.Task[None]] = {}
        self._writes: set[asyncio.Future[Any]] = set()
        self._orphans: list[tuple[int, int]] | None = None  # (tenant id, run id)
        self._turn = 0

    @property
    def in_flight(self) -> int:
        return len(self._runs)

    async def run(self) -> None:
        """Runs until cancelled; then stops the runs in flight and waits for them."""
        backoff = 0.0
        try:
            while True:
                try:
                    await self.tick()
                    backoff = 0.0
                except Exception:
                    backoff = min(max(1.0, backoff * 2), MAX_BACKOFF_SECONDS)
                    log.exception("simulator tick failed; retrying in %.0f s", backoff)
                await asyncio.sleep(backoff or TICK_SECONDS / self._speed)
        finally:
            tasks = list(self._runs.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Writes whose callers were cancelled: their outcome is of no use any more.
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def tick(self) -> None:
        """Starts up to STARTS_PER_TICK runs while fewer than max_in_flight are in flight."""
        budget = min(STARTS_PER_TICK, self._max_in_flight - self.in_flight)
        if budget <= 0:
            return
        if self._orphans is None:
            self._orphans = await self._load_orphans()
            if self._orphans:
                log.info("taking over %d runs left RUNNING", len(self._orphans))
        if self._orphans:
            tenant_id, run_id = self._orphans.pop(0)
            await self._adopt(tenant_id, run_id)
            budget -= 1
        tenants = await self._tenants()
        if not tenants or budget <= 0:
            return
        self._turn += 1
        start = self._turn % len(tenants)
        for tenant_id in tenants[start:] + tenants[:start]:
            claimed = await self._claim(tenant_id, budget)
            budget -= claimed
            if not claimed and self.in_flight < self._max_in_flight:
                await self._nudge(tenant_id)  # claimed on a later tick
            if budget <= 0:
                return

    async def _tenants(self) -> list[int]:
        async with self._db.read() as session:
            rows = await session.scalars(
                select(Policy.tenant_id).where(Policy.active.is_(True)).distinct()
            )
            return sorted(rows.all())

    async def _load_orphans(self) -> list[tuple[int, int]]:
        async with self._db.read() as session:
            rows = await session.execute(
                select(SyncRun.tenant_id, SyncRun.id)
                .where(SyncRun.state == RunState.RUNNING, SyncRun.started_at < self._started_at)
                .order_by(SyncRun.started_at)
                .limit(MAX_ORPHANS)
            )
            return [(row.tenant_id, row.id) for row in rows]

    async def _claim(self, tenant_id: int, limit: int) -> int:
        def claim(conn: Connection, now: int) -> tuple[list[RunView], list[Event]]:
            return transitions.claim_due_runs(conn, tenant_id, now, limit)

        runs = await self._commit(claim)
        for run in runs:  # after commit
            plan = plan_run(rng_for(f"{tenant_id}/{run.id}", self._seed), run.kind, run.service)
            self._launch(tenant_id, run.id, plan)
        return len(runs)

    async def _adopt(self, tenant_id: int, run_id: int) -> None:
        async with self._db.read() as session:
            run = await session.get(SyncRun, run_id)
        if run is None or run.state != RunState.RUNNING or run_id in self._runs:
            return
        plan = plan_run(
            rng_for(f"{tenant_id}/{run_id}", self._seed),
            run.kind,
            run.service,
            items_total=run.items_total,
            items_processed=run.items_processed,
            changes=run.changes,
        )
        self._launch(tenant_id, run_id, plan)

    async def _nudge(self, tenant_id: int) -> None:
        """ "Sync now" for a random idle user of an active policy, the way an operator would."""
        pick = self._rng.random()

        def nudge(conn: Connection, now: int) -> tuple[None, list[Event]]:
            active = select(Policy.id).where(Policy.tenant_id == tenant_id, Policy.active.is_(True))
            idle = select(SyncUser.id).where(
                SyncUser.tenant_id == tenant_id,
                SyncUser.policy_id.in_(active.scalar_subquery()),
                SyncUser.current_run_id.is_(None),
            )
            highest = conn.scalar(select(func.max(SyncUser.id))) or 1
            from_id = 1 + int(pick * highest)
            user_id = conn.scalar(
                idle.where(SyncUser.id >= from_id).order_by(SyncUser.id).limit(1)
            ) or conn.scalar(idle.order_by(SyncUser.id).limit(1))
            if user_id is None:
                return None, []
            user = transitions.load_user(conn, tenant_id, user_id)
            return None, [transitions.request_sync(conn, user, now)]

        await self._commit(nudge)

    async def _commit(self, change: Change[T]) -> T:
        """write(), kept track of until it ends, so that stopping can wait for it."""
        task: asyncio.Future[T] = asyncio.ensure_future(write(self._db, self._publisher, change))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    def _launch(self, tenant_id: int, run_id: int, plan: RunPlan) -> None:
        task = asyncio.create_task(self._drive(tenant_id, run_id, plan), name=f"run-{run_id}")
        self._runs[run_id] = task
        task.add_done_callback(lambda _: self._runs.pop(run_id, None))

    async def _drive(self, tenant_id: int, run_id: int, plan: RunPlan) -> None:
        try:
            for step in plan.steps:
                await asyncio.sleep(step.delay / self._speed)
                await self._write(partial(self._report, tenant_id, run_id, step))
            await asyncio.sleep(plan.finish_delay / self._speed)
            state = await self._write(lambda: self._finish(tenant_id, run_id, plan))
            log.debug("run %d finished: %s", run_id, state)
        except (NotFound, Conflict) as error:
            log.info("run %d left to others: %s", run_id, error.message)
        except Exception:
            log.exception("simulated run %d stopped", run_id)

    async def _write(self, write: Callable[[], Awaitable[T]]) -> T:
        """A write, retried on unexpected errors (database busy, connection lost): reports are
        cumulative, so repeating one is harmless."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return await write()
            except (NotFound, Conflict):
                raise
            except Exception:
                if attempt == WRITE_ATTEMPTS:
                    raise
                log.warning("simulator write failed, retrying", exc_info=True)
                await asyncio.sleep(attempt)
        raise AssertionError("unreachable")

    async def _report(self, tenant_id: int, run_id: int, step: Step) -> None:
        items = [_item_input(item) for item in step.failed_items]

        def report(conn: Connection, now: int) -> tuple[None, list[Event]]:
            run, user = transitions.load_run(conn, tenant_id, run_id)
            if run.state != RunState.RUNNING:
                raise Conflict(f"The sync run already finished ({run.state}).")
            _, events = transitions.report_progress(
                conn, run, user, now, step.items_processed, step.changes, step.items_total, items
            )
            return None, events

        await self._commit(report)

    async def _finish(self, tenant_id: int, run_id: int, plan: RunPlan) -> str:
        code, message = plan.error or (None, None)

        def finish(conn: Connection, now: int) -> tuple[str, list[Event]]:
            run, user = transitions.load_run(conn, tenant_id, run_id)
            finished, event = transitions.finish_run(conn, run, user, now, code, message)
            return finished.state, [event]

        return await self._commit(finish)


def _item_input(item: ItemFailure) -> FailedItemInput:
    return FailedItemInput(item.item_id, item.item_type, item.error_code, item.error_message)


@asynccontextmanager
async def running_simulator(
    db: Database, publisher: Publisher, *, speed: float = 1.0, seed: int | None = None
) -> AsyncIterator[Simulator]:
    """The simulator as a background task for the block; cancelled and awaited at its end."""
    simulator = Simulator(db, publisher, speed=speed, seed=seed)
    task = asyncio.create_task(simulator.run(), name="syncstatus-simulator")
    log.info("simulated sync workers started (up to %d runs in flight)", MAX_IN_FLIGHT)
    try:
        yield simulator
    finally:
        await cancel_and_wait(task)  # re-raises only our own cancellation
