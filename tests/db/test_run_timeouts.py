"""Runs whose worker went silent (app.lifecycle.timeouts, app.ops.run_reaper) below the API, on
SQLite and PostgreSQL, the reaper called with an explicit `now`: a silent run ends FAILED with
WORKER_LOST through finish_run, so the user's status, the counters, failure reasons and trends
equal a recount, its event is published and its webhook queued; a run reported recently is left;
the worker learns its run was ended (CONFLICT on finish); a run finished or reported meanwhile is
not ended (re-checked under its lock); concurrent reapers end each run once; and the candidates
come from the partial index of running runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import BigInteger, Connection, func, select, text

import tests.server as server_helpers
from app.admin import user_admin
from app.admin.policies import PolicyInput, create_policy
from app.domain.errors import Conflict
from app.domain.timeutil import MICROS_PER_HOUR, MICROS_PER_MINUTE
from app.domain.views import RunView
from app.events.messages import Publisher, UserEvent, decode
from app.lifecycle import sql, timeouts, transitions
from app.ops import run_reaper
from app.ops.telemetry import Telemetry
from app.reads.failure_reasons import failure_reasons
from app.reads.metrics import sync_metrics
from app.reads.trends import sync_trends
from app.store import counters
from app.store.engine import Database
from app.store.models import (
    LatestCount,
    StatusCount,
    SyncRequest,
    SyncRun,
    SyncUser,
    Tenant,
    Webhook,
    WebhookDelivery,
)
from tests.api_tests.triage_recount import recount

T0 = 1_790_000_000_000_000 // MICROS_PER_HOUR * MICROS_PER_HOUR
TIMEOUT = 3600.0  # seconds
S = 1_000_000
AFTER_TIMEOUT = T0 + int(TIMEOUT) * S + S  # a run started at T0 and silent since is lost
INTERVAL = 60  # minutes between a user's syncs
MESSAGE = "No report from the sync worker for 60 minutes; syncstatus ended the run."


class Recorded:
    """A broadcast that keeps what is published (the real Publisher encodes it)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def publish(self, channel: str, message: Any) -> None:
        self.messages.append(message)

    def user_events(self) -> list[UserEvent]:
        return [e for e in map(decode, self.messages) if isinstance(e, UserEvent)]


@dataclass
class World:
    db: Database
    url: str
    tenant: int
    name: str
    users: list[int]
    broadcast: Recorded

    @property
    def publisher(self) -> Publisher:
        return Publisher(self.broadcast)

    async def start(self, user_id: int, now: int = T0) -> RunView:
        def change(conn: Connection) -> RunView:
            user = transitions.load_user(conn, self.tenant, user_id)
            return transitions.start_run(conn, user, now)[0]

        return await self.db.run_write(change)

    async def report(self, run_id: int, processed: int, now: int) -> RunView:
        def change(conn: Connection) -> RunView:
            run, user = transitions.load_run(conn, self.tenant, run_id)
            return transitions.report_progress(conn, run, user, now, processed, processed)[0]

        return await self.db.run_write(change)

    async def finish(self, run_id: int, now: int, code: str | None = None) -> RunView:
        def change(conn: Connection) -> RunView:
            run, user = transitions.load_run(conn, self.tenant, run_id)
            return transitions.finish_run(conn, run, user, now, error_code=code)[0]

        return await self.db.run_write(change)

    async def reap(self, now: int, **options: Any) -> list[RunView]:
        return await run_reaper.end_silent_runs(
            self.db, self.publisher, options.pop("timeout", TIMEOUT), now=now, **options
        )

    async def run(self, run_id: int) -> Any:
        async with self.db.read() as session:
            return (await session.execute(select(SyncRun).where(SyncRun.id == run_id))).scalar_one()

    async def user(self, user_id: int) -> Any:
        async with self.db.read() as session:
            found = select(SyncUser).where(SyncUser.id == user_id)
            return (await session.execute(found)).scalar_one()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database per test, as the reaper ends silent runs of every tenant: a copy of
    the migrated template (the postgres half is e2e by its param, as in conftest; the SQLite
    half starts no service and stays in the inner loop, hence the module attribute)."""
    with server_helpers.throwaway_database(request.param) as url:
        yield url


@pytest.fixture
async def world(db: Database, database_url: str) -> World:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    async with db.write() as session:
        tenant = Tenant(name=name, created_at=0)
        session.add(tenant)
        await session.flush()
        policy, _ = await create_policy(
            session, tenant.id, 0, PolicyInput("p", None, True, INTERVAL, ["MAIL"])
        )
        rows, _ = await user_admin.add_users(
            session,
            tenant.id,
            0,
            [(f"u{i}@m365.example", f"u{i}@g.example", policy.id) for i in range(8)],
        )
        ids = [row.id for row in rows]
        tenant_id = tenant.id
    return World(db, database_url, tenant_id, name, ids, Recorded())


async def _counters(world: World) -> tuple[set[Any], set[Any]]:
    async with world.db.read() as session:
        status = await session.execute(
            select(StatusCount.policy_key, StatusCount.status, StatusCount.count).where(
                StatusCount.tenant_id == world.tenant, StatusCount.count != 0
            )
        )
        latest = await session.execute(
            select(
                LatestCount.hour, LatestCount.policy_key, LatestCount.status, LatestCount.count
            ).where(LatestCount.tenant_id == world.tenant, LatestCount.count != 0)
        )
        return set(status.all()), set(latest.all())


async def assert_exact(world: World, now: int) -> None:
    """Every counter the lifecycle keeps equals a recount from users and runs."""
    async with world.db.read() as session:
        metrics = await sync_metrics(session, world.tenant, now)
        by_status = dict(
            (
                await session.execute(
                    select(SyncUser.status, func.count())
                    .where(SyncUser.tenant_id == world.tenant)
                    .group_by(SyncUser.status)
                )
            ).all()
        )
        reasons = await failure_reasons(session, world.tenant, 100)
        points = await sync_trends(session, world.tenant, T0 - MICROS_PER_HOUR, now, "HOUR")
    assert metrics.failed_syncs == by_status.get("FAILED", 0)
    assert metrics.syncs_in_progress == by_status.get("IN_PROGRESS", 0)
    kept = await _counters(world)
    async with world.db.write() as session:
        await counters.recount(session, world.tenant)
    assert await _counters(world) == kept
    expected = await recount(world.url, world.name)
    assert expected["mismatched_users"] == []
    found = {r.error_code: (r.user_count, r.sample_message, r.last_seen_at) for r in reasons}
    assert found == expected["reasons"]
    trends = {
        p.at // MICROS_PER_HOUR: {
            k: v
            for k, v in {
                "runsStarted": p.runs_started,
                "runsSucceeded": p.runs_succeeded,
                "runsCompletedWithWarning": p.runs_completed_with_warning,
                "runsFailed": p.runs_failed,
            }.items()
            if v
        }
        for p in points
    }
    assert {h: v for h, v in trends.items() if v} == expected["hours"]


async def test_a_silent_run_ends_failed_with_worker_lost(world: World) -> None:
    a, b, c = world.users[:3]
    silent = await world.start(a)
    await world.report(silent.id, 10, T0 + 5 * MICROS_PER_MINUTE)  # then nothing
    alive = await world.start(b)
    await world.report(alive.id, 10, AFTER_TIMEOUT - 60 * S)  # a minute ago: alive
    done = await world.start(c)
    await world.finish(done.id, T0 + S)
    before = await world.user(a)
    telemetry = Telemetry()
    async with world.db.write() as session:  # a webhook subscribed to run.failed
        session.add(
            Webhook(
                tenant_id=world.tenant,
                url="https://hooks.example/x",
                events=",RUN_FAILED,",
                active=True,
                secret_sealed="sealed",
                created_at=0,
            )
        )
    poked: list[bool] = []

    now = AFTER_TIMEOUT + 5 * MICROS_PER_MINUTE
    ended = await world.reap(now, telemetry=telemetry, on_ended=lambda: poked.append(True))

    assert [run.id for run in ended] == [silent.id]
    run = await world.run(silent.id)
    assert (run.state, run.error_code, run.error_message, run.finished_at) == (
        "FAILED",
        "WORKER_LOST",
        MESSAGE,
        now,
    )
    assert run.items_processed == 10  # what was reported stays
    user = await world.user(a)
    assert (user.status, user.current_run_id, user.last_finished_run_id, user.error_code) == (
        "FAILED",
        None,
        silent.id,
        "WORKER_LOST",
    )
    assert (user.version, user.unresolved_failure_count) == (before.version + 1, 1)
    assert user.due_at == before.due_at  # the next sync: its start + the interval, as before
    assert (await world.run(alive.id)).state == "RUNNING"
    assert (await world.run(done.id)).state == "SUCCEEDED"
    [event] = world.broadcast.user_events()
    assert (event.kind, event.user.id, event.user.status) == ("finished", a, "FAILED")
    assert event.user.last_finished_run is not None
    assert event.user.last_finished_run.error_code == "WORKER_LOST"
    async with world.db.read() as session:
        deliveries = (
            await session.execute(
                select(WebhookDelivery.event).where(WebhookDelivery.tenant_id == world.tenant)
            )
        ).all()
    assert [d.event for d in deliveries] == ["RUN_FAILED"] and poked == [True]
    assert telemetry.registry.get_sample_value("syncstatus_runs_timed_out_total") == 1
    await assert_exact(world, now)
    assert await world.reap(now) == []  # nothing left to end


async def test_reports_keep_a_run_alive(world: World) -> None:
    """Each report, even one that repeats the last counters, is a sign of life."""
    run = await world.start(world.users[0])
    await world.report(run.id, 10, T0 + 10 * MICROS_PER_MINUTE)
    await world.report(run.id, 10, T0 + 50 * MICROS_PER_MINUTE)  # the same counters again
    assert await world.reap(AFTER_TIMEOUT + 30 * MICROS_PER_MINUTE) == []
    assert (await world.run(run.id)).state == "RUNNING"
    last = T0 + 50 * MICROS_PER_MINUTE
    assert (await world.run(run.id)).last_report_at == last
    assert await world.reap(last + int(TIMEOUT) * S) == []  # exactly the timeout: not yet
    [ended] = await world.reap(last + int(TIMEOUT) * S + 1)
    assert ended.id == run.id


async def test_a_report_within_a_second_of_the_last_is_not_written(world: World) -> None:
    run = await world.start(world.users[0])
    await world.report(run.id, 10, T0 + S // 2)
    assert (await world.run(run.id)).last_report_at == T0
    await world.report(run.id, 10, T0 + 2 * S)
    assert (await world.run(run.id)).last_report_at == T0 + 2 * S


async def test_the_worker_learns_its_run_was_ended(world: World) -> None:
    run = await world.start(world.users[0])
    await world.reap(AFTER_TIMEOUT)
    world.broadcast.messages.clear()
    late = AFTER_TIMEOUT + S
    with pytest.raises(Conflict, match=r"already finished \(FAILED\)"):
        await world.finish(run.id, late)
    reported = await world.report(run.id, 500, late)  # as for any finished run: no change
    assert (reported.state, reported.error_code, reported.items_processed) == (
        "FAILED",
        "WORKER_LOST",
        0,
    )
    assert world.broadcast.messages == []
    assert (await world.run(run.id)).last_report_at == T0
    await assert_exact(world, late)


async def test_the_user_is_due_again(world: World) -> None:
    user_id = world.users[0]
    run = await world.start(user_id)

    def claim(conn: Connection, now: int) -> list[RunView]:
        return transitions.claim_due_runs(conn, world.tenant, now, 100)[0]

    assert user_id not in [r.user_id for r in await world.db.run_write(lambda c: claim(c, T0))]
    await world.reap(AFTER_TIMEOUT)
    claimed = await world.db.run_write(lambda conn: claim(conn, AFTER_TIMEOUT))
    assert user_id in [r.user_id for r in claimed] and run.id not in [r.id for r in claimed]


async def test_a_run_reported_or_finished_meanwhile_is_checked_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates read before their lock (PostgreSQL: a snapshot older than a finish that
    committed meanwhile) are read again under it: here every run is a candidate."""
    silent, reported, finished = [await world.start(u) for u in world.users[:3]]
    await world.report(reported.id, 1, AFTER_TIMEOUT - S)
    await world.finish(finished.id, T0 + S)
    every_run = (
        select(sql.runs.c.id, sql.runs.c.tenant_id, sql.runs.c.user_id)
        .join(sql.users, sql.users.c.id == sql.runs.c.user_id)
        .where(sql.runs.c.tenant_id == world.tenant, sql.bindparam("cutoff", type_=BigInteger) > 0)
        .limit(sql.bindparam("limit"))
    )
    monkeypatch.setattr(sql, "SILENT_RUNS", every_run)
    monkeypatch.setattr(
        sql, "LOCK_SILENT_RUNS", every_run.with_for_update(skip_locked=True, of=sql.users)
    )
    ended = await world.reap(AFTER_TIMEOUT)
    assert [run.id for run in ended] == [silent.id]
    assert (await world.run(reported.id)).state == "RUNNING"
    assert (await world.run(finished.id)).state == "SUCCEEDED"
    await assert_exact(world, AFTER_TIMEOUT)


async def test_a_run_whose_worker_is_writing_is_passed_over(world: World) -> None:
    """PostgreSQL: a worker's finish in flight holds the user's lock; the reaper does not
    wait for it and does not end the run, which the worker finishes once (SKIP LOCKED)."""
    db = world.db
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    busy, other = [await world.start(u) for u in world.users[:2]]
    async with db.write_engine.connect() as conn:
        await conn.begin()
        # The worker's finish has locked its user (the first thing it does), not yet written.
        run, user = await conn.run_sync(lambda c: transitions.load_run(c, world.tenant, busy.id))
        ended = await asyncio.wait_for(world.reap(AFTER_TIMEOUT), 10)
        assert [found.id for found in ended] == [other.id]
        await conn.run_sync(lambda c: transitions.finish_run(c, run, user, AFTER_TIMEOUT))
        await conn.commit()
    assert await world.reap(AFTER_TIMEOUT) == []
    assert (await world.run(busy.id)).state == "SUCCEEDED"
    await assert_exact(world, AFTER_TIMEOUT)


async def test_concurrent_reapers_end_each_run_once(world: World) -> None:
    """Several processes' reapers at once (on SQLite: one after another), small batches."""
    async with world.db.write() as session:
        more, _ = await user_admin.add_users(
            session,
            world.tenant,
            0,
            [(f"v{i}@m365.example", f"v{i}@g.example", None) for i in range(22)],
        )
    runs = [await world.start(u) for u in [*world.users, *(row.id for row in more)]]
    telemetry = Telemetry()
    found = await asyncio.gather(
        *(world.reap(AFTER_TIMEOUT, limit=3, telemetry=telemetry) for _ in range(4))
    )
    ended = [run.id for batch in found for run in batch]
    assert sorted(ended) == sorted(run.id for run in runs)  # each once
    assert telemetry.registry.get_sample_value("syncstatus_runs_timed_out_total") == len(runs)
    finished = [e for e in world.broadcast.user_events() if e.kind == "finished"]
    assert sorted(e.user.id for e in finished) == sorted(run.user_id for run in runs)
    await assert_exact(world, AFTER_TIMEOUT)


async def test_no_timeout_ends_nothing(world: World) -> None:
    await world.start(world.users[0])
    assert await world.reap(T0 + 1000 * MICROS_PER_HOUR, timeout=0) == []


async def test_candidates_come_from_the_index_of_running_runs(world: World) -> None:
    postgres = world.db.dialect == "postgresql"
    statement = (sql.LOCK_SILENT_RUNS if postgres else sql.SILENT_RUNS).params(
        cutoff=T0, limit=timeouts.BATCH
    )
    async with world.db.read() as session:
        conn = await session.connection()
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        if postgres:
            # A near-empty table is read whole whatever its indexes: forbid that, to see
            # whether the index serves the statement.
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        plan = (await conn.exec_driver_sql(explain + str(compiled))).all()
    described = " ".join(str(part) for row in plan for part in row)
    assert "ix_sync_runs_running_report" in described, described


async def test_a_request_made_while_the_run_ran_is_folded_into_the_finish(world: World) -> None:
    """PostgreSQL's requestSyncs locks no user, so a user whose run started meanwhile is also
    requested (app.lifecycle.sql.BulkRequest). Ending its run folds the request first, as a
    worker's finish does: the finish's version counts it and the user stays requested."""
    if world.db.dialect == "sqlite":
        pytest.skip("SQLite's single writer never lets a request meet a running run")
    user_id = world.users[0]
    run = await world.start(user_id)
    before = await world.user(user_id)
    async with world.db.write() as session:  # as requestSyncs leaves it: one pending request
        session.add(SyncRequest(user_id=user_id, tenant_id=world.tenant, requested_at=T0, bumps=1))
    [ended] = await world.reap(AFTER_TIMEOUT)
    assert ended.id == run.id
    user = await world.user(user_id)
    assert (user.status, user.sync_requested, user.version) == ("FAILED", True, before.version + 2)
    [event] = world.broadcast.user_events()
    assert event.user.version == user.version and event.user.sync_requested
    async with world.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(SyncRequest)) == 0
