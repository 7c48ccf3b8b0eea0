"""The in-process simulator (app.demo.simulator) on a real SQLite file, sped up: it drives runs
through the run lifecycle, takes over runs left RUNNING, keeps the counters exact and stops
cleanly."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from app.demo.seed import RUN_ERRORS, seed
from app.demo.simulation import MAX_IN_FLIGHT
from app.demo.simulator import running_simulator
from app.domain.timeutil import now_micros
from app.events.messages import Publisher, UserEvent, decode
from app.store.engine import Database
from app.store.models import StatusCount, SyncRun, SyncUser
from tests.server import open_sqlite


class Recorder:
    """A broadcast that keeps what is published."""

    def __init__(self) -> None:
        self.events: list[UserEvent] = []

    async def publish(self, channel: str, message: Any) -> None:
        event = decode(message)
        if isinstance(event, UserEvent):
            self.events.append(event)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with open_sqlite() as database:
        yield database


async def _runs(db: Database) -> list[SyncRun]:
    async with db.read() as session:
        return list((await session.scalars(select(SyncRun))).all())


async def test_simulator_drives_runs_and_stops_cleanly(db: Database) -> None:
    tenant_id = await seed(db, "Sim", 60)
    before = {run.id: run for run in await _runs(db)}
    orphans = {run_id for run_id, run in before.items() if run.state == "RUNNING"}
    assert orphans, "the seed leaves some runs RUNNING"
    recorder = Recorder()
    started_at = now_micros()
    peak = 0
    async with running_simulator(db, Publisher(recorder), speed=16.0, seed=1) as simulator:
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            peak = max(peak, simulator.in_flight)
            runs = await _runs(db)
            finished_new = [r for r in runs if r.started_at >= started_at and r.finished_at]
            adopted = all(r.state != "RUNNING" for r in runs if r.id in orphans)
            if len(finished_new) >= 12 and adopted:
                break
        else:
            pytest.fail("the simulator did not finish enough runs in 30 s")
    assert simulator.in_flight == 0, "every run task ended with the simulator"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("run-")]
    assert 1 <= peak <= MAX_IN_FLIGHT

    kinds = Counter(event.kind for event in recorder.events)
    assert kinds["started"] and kinds["progress"] and kinds["finished"]
    assert all(event.user.tenant_id == tenant_id for event in recorder.events)

    runs = await _runs(db)
    for run in runs:
        if run.id in orphans:  # taken over and finished from where the seed left them
            assert run.finished_at is not None
            assert run.items_processed >= before[run.id].items_processed
        if run.started_at < started_at or run.state == "RUNNING":
            continue
        assert run.items_total is not None and run.items_processed <= run.items_total
        if run.state == "FAILED":
            assert (run.error_code, run.error_message) in RUN_ERRORS
        else:
            assert run.error_code is None and run.items_processed == run.items_total
            assert (run.state == "COMPLETED_WITH_WARNING") == (run.items_failed > 0)

    async with db.read() as session:
        # One RUNNING run per user at most, and the user points at it.
        running = Counter(r.user_id for r in runs if r.state == "RUNNING")
        assert all(n == 1 for n in running.values())
        users = (await session.scalars(select(SyncUser))).all()
        assert {u.id for u in users if u.current_run_id} == set(running)
        # The status counters still equal a recount of the users.
        grouped = await session.execute(
            select(SyncUser.status, func.count()).group_by(SyncUser.status)
        )
        counted = Counter({status: n for status, n in grouped.all()})
        kept: Counter[str] = Counter()
        for row in (await session.scalars(select(StatusCount))).all():
            kept[row.status] += row.count
        assert +kept == +counted


class SlowRecorder(Recorder):
    """A broadcast that takes its time, so that a stop can come while a write is publishing."""

    def __init__(self) -> None:
        super().__init__()
        self.publishing = asyncio.Event()
        self.busy = 0

    async def publish(self, channel: str, message: Any) -> None:
        self.busy += 1
        self.publishing.set()
        try:
            await asyncio.sleep(0.3)
            await super().publish(channel, message)
        finally:
            self.busy -= 1


async def test_a_stop_waits_for_the_writes_under_way(db: Database) -> None:
    # write() is shielded: a stop that cancelled its caller used to return while the write went
    # on, which committed (a run started, say) and published after the simulator had stopped.
    await seed(db, "Sim", 30)
    recorder = SlowRecorder()
    async with running_simulator(db, Publisher(recorder), speed=16.0, seed=2):
        await asyncio.wait_for(recorder.publishing.wait(), 30)
    assert recorder.busy == 0, "a write was still publishing after the simulator stopped"
    published = len(recorder.events)
    await asyncio.sleep(0.5)
    assert len(recorder.events) == published
