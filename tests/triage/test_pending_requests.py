"""requestSyncs' pending requests (sync_requests, app.store.pending_requests) on SQLite and
PostgreSQL: claims take requested users (oldest first, merged with users due by schedule), every
writer folds a pending request into the user's row keeping the version growing, the live
announcement finds pending users, and on PostgreSQL a run started while the request runs leaves
its user requested too, and a writer waits for a request in flight."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select, text, update
from sqlalchemy.engine import Engine

from app.admin import user_admin
from app.admin.policies import PolicyInput, create_policy, set_policy_active
from app.domain.timeutil import now_micros
from app.domain.views import public_version
from app.events.messages import Publisher, UserEvent, UsersRequested, decode
from app.lifecycle import bulk_requests, sql, transitions
from app.reads.user_batches import user_batches
from app.reads.users import UserFilter, users_by_ids
from app.store.engine import Database
from app.store.models import Policy, SyncRequest, SyncUser, Tenant
from subscriptions.policy_changes import requested_users
from tests.triage.test_bulk_requests import Recorded


@dataclass
class World:
    db: Database
    tenant: int
    other: int
    policy: int
    synced: list[int]  # ran a moment ago: due tomorrow
    fresh: int  # never synced: due since it was added (at 0)


@pytest.fixture
async def world(db: Database) -> World:
    label = uuid.uuid4().hex[:8]
    async with db.write() as session:
        tenant, other = (
            Tenant(name=f"p-{label}", created_at=0),
            Tenant(name=f"o-{label}", created_at=0),
        )
        session.add_all([tenant, other])
        await session.flush()
        daily = PolicyInput("daily", None, True, 1440, ["MAIL"])
        policy, _ = await create_policy(session, tenant.id, 0, daily)
        theirs, _ = await create_policy(session, other.id, 0, daily)
        added, _ = await user_admin.add_users(
            session,
            tenant.id,
            0,
            [(f"u{i}@m.example", f"u{i}@g.example", policy.id) for i in range(5)],
        )
        mine = [u.id for u in added]
        await user_admin.add_users(
            session, other.id, 0, [("x@m.example", "x@g.example", theirs.id)]
        )
        made = World(db, tenant.id, other.id, policy.id, mine[:4], mine[4])

    def run_all(conn: Connection) -> None:
        for user_id in made.synced:
            run, _ = transitions.start_run(
                conn, transitions.load_user(conn, made.tenant, user_id), now_micros()
            )
            found, user = transitions.load_run(conn, made.tenant, run.id)
            transitions.finish_run(conn, found, user, now_micros())

    await db.run_write(run_all)
    return made


async def _seen(db: Database, tenant_id: int, ids: list[int]) -> dict[int, Any]:
    async with db.read() as session:
        return await users_by_ids(session, tenant_id, ids)


async def _pending(db: Database, world: World) -> dict[int, int]:
    """The tenant's pending requests (the database is shared with other tests)."""
    async with db.read() as session:
        rows = await session.execute(
            select(SyncRequest.user_id, SyncRequest.requested_at).where(
                SyncRequest.tenant_id == world.tenant
            )
        )
    return dict(rows.tuples().all())


async def _request(world: World, filt: UserFilter) -> tuple[bulk_requests.BulkResult, list[Any]]:
    recorded = Recorded()
    result = await bulk_requests.request_syncs(world.db, Publisher(recorded), world.tenant, filt)
    return result, [decode(m) for m in recorded.messages]


def _claim(world: World, limit: int) -> Any:
    def claim(conn: Connection) -> Any:
        return transitions.claim_due_runs(conn, world.tenant, now_micros(), limit)

    return world.db.run_write(claim)


async def test_claims_take_requested_users_after_those_due_earlier(world: World) -> None:
    db = world.db
    first, second = world.synced[0], world.synced[2]
    await _request(world, UserFilter(email_contains="u0@"))
    await _request(world, UserFilter(email_contains="u2@"))
    before = await _seen(db, world.tenant, [first, second])
    assert all(u.sync_requested for u in before.values())
    # Due since 0, the fresh user comes first; then the requests, oldest first.
    runs, events = await _claim(world, 2)
    assert [r.user_id for r in runs] == [world.fresh, first]
    started = {e.user.id: e.user for e in events if isinstance(e, UserEvent)}
    assert started[first].version == before[first].version + 1
    assert not started[first].sync_requested
    assert await _pending(db, world) == {second: (await _pending(db, world))[second]}
    runs, _ = await _claim(world, 2)
    assert [r.user_id for r in runs] == [second]
    assert await _pending(db, world) == {}
    after = await _seen(db, world.tenant, [first, second])
    assert after[first].version == started[first].version
    assert after[second].version == before[second].version + 1
    assert not after[second].sync_requested
    # The others ran a moment ago: not due.
    assert await _claim(world, 100) == ([], [])


async def test_claims_pass_over_requested_users_of_an_inactive_policy(world: World) -> None:
    db = world.db
    await _request(world, UserFilter(policy_id=world.policy))
    async with db.write() as session:
        await set_policy_active(session, world.tenant, world.policy, 1, False)
    assert await _claim(world, 100) == ([], [])
    assert len(await _pending(db, world)) == 5  # still pending: active again, they are due at once
    async with db.write() as session:
        await set_policy_active(session, world.tenant, world.policy, 2, True)
    runs, _ = await _claim(world, 100)
    assert {r.user_id for r in runs} == {*world.synced, world.fresh}
    assert await _pending(db, world) == {}


async def test_writers_fold_the_pending_request(world: World) -> None:
    db = world.db
    user_id, other_id = world.synced[1], world.synced[3]
    result, _ = await _request(world, UserFilter(policy_id=world.policy))
    assert (result.requested, result.skipped) == (5, 0)
    again, _ = await _request(world, UserFilter(email_contains="u1@"))
    assert (again.requested, again.skipped) == (1, 0)
    seen = await _seen(db, world.tenant, [user_id, other_id])
    assert seen[user_id].version == seen[other_id].version + 1  # requested twice: two versions

    def request_one(conn: Connection) -> Any:
        return transitions.request_sync(conn, transitions.load_user(conn, world.tenant, user_id), 7)

    event = await db.run_write(request_one)
    assert (event.user.version, event.user.sync_requested, event.user.due_at) == (
        seen[user_id].version + 1,
        True,
        7,
    )
    assert user_id not in await _pending(db, world)
    assert (await _seen(db, world.tenant, [user_id]))[user_id] == event.user
    # An assignment (ORM) folds it too: one public version more, still requested.
    async with db.write() as session:
        _, events = await user_admin.assign_policy(session, world.tenant, 9, [other_id], None)
    [assigned] = events
    assert isinstance(assigned, UserEvent)
    async with db.read() as session:
        policy = await session.get(Policy, world.policy)
        row = await session.get(SyncUser, other_id)
    assert row is not None and row.sync_requested and row.policy_id is None
    # Without a policy the public version is the own one: the old public one plus one.
    assert assigned.user.version == public_version(seen[other_id].version, policy) + 1
    assert row.version == assigned.user.version
    assert other_id not in await _pending(db, world)


async def test_the_announcement_finds_pending_users_until_they_start(world: World) -> None:
    db = world.db
    _, events = await _request(world, UserFilter(email_contains="u3@"))
    [event] = [e for e in events if isinstance(e, UsersRequested)]
    found = [u for part in [p async for p in requested_users(db, event, None)] for u in part]
    assert [u.user.id for u in found] == [world.synced[3]]
    assert found[0].user.sync_requested and found[0].kind == "requested"
    watched = [p async for p in requested_users(db, event, [world.synced[0]])]
    assert watched == []
    await _claim(world, 100)  # starts the fresh and the requested user
    assert [p async for p in requested_users(db, event, None)] == []


async def test_other_tenants_are_left_alone(world: World) -> None:
    db = world.db
    await _request(world, UserFilter())
    async with db.read() as session:
        ours = SyncRequest.tenant_id.in_([world.tenant, world.other])
        tenants = set(await session.scalars(select(SyncRequest.tenant_id).where(ours).distinct()))
        count = await session.scalar(select(func.count()).select_from(SyncRequest).where(ours))
    assert (tenants, count) == ({world.tenant}, 5)


async def test_a_run_started_meanwhile_is_requested_too(world: World) -> None:
    """PostgreSQL: the request takes no user locks. A run a claim starts while it runs does
    not stop it: the user runs and is requested too (counted requested), reads show both, and
    the finish folds the request, so the user is claimed again at once. (SQLite's single
    writer orders them.) This used to be the skipped user: the request locked users."""
    db = world.db
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    user_id = world.synced[2]
    async with db.write_engine.connect() as conn:
        await conn.begin()
        _, started = await conn.run_sync(
            lambda c: transitions.start_run(
                c, transitions.load_user(c, world.tenant, user_id), now_micros()
            )
        )
        assert isinstance(started, UserEvent)
        request = asyncio.create_task(_request(world, UserFilter()))
        await asyncio.sleep(1.0)
        # Ordered after the start on the user's sync_requests key (pending_requests.fold).
        assert not request.done()
        await conn.commit()
    result, _ = await request
    assert (result.requested, result.skipped) == (5, 0)
    assert user_id in await _pending(db, world)
    seen = (await _seen(db, world.tenant, [user_id]))[user_id]
    assert seen.current_run_id == started.user.current_run_id is not None
    assert seen.sync_requested and seen.version == started.user.version + 1

    def finish(conn: Connection) -> Any:
        found, user = transitions.load_run(conn, world.tenant, seen.current_run_id or 0)
        return transitions.finish_run(conn, found, user, now_micros())[1]

    finished = await db.run_write(finish)
    assert (finished.user.version, finished.user.sync_requested) == (seen.version + 1, True)
    assert user_id not in await _pending(db, world)
    assert (await _seen(db, world.tenant, [user_id]))[user_id] == finished.user
    runs, _ = await _claim(world, 100)
    assert user_id in {r.user_id for r in runs}


async def test_a_writer_waits_for_a_request_in_flight(world: World) -> None:
    """PostgreSQL: a writer of a user a request has inserted but not committed waits for it
    and folds it: its change's version counts the request (no two states share a version)."""
    db = world.db
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    user_id = world.synced[1]
    before = (await _seen(db, world.tenant, [user_id]))[user_id]
    statements = sql.BulkRequest.of(db.dialect, world.tenant, [SyncUser.tenant_id == world.tenant])

    def request_one(conn: Connection) -> Any:
        return transitions.request_sync(conn, transitions.load_user(conn, world.tenant, user_id), 7)

    async with db.write_engine.connect() as conn:
        await conn.begin()
        counts = await conn.run_sync(
            transitions.request_syncs_between, statements, user_id, user_id, 3
        )
        assert counts == (1, 0)
        writer = asyncio.create_task(db.run_write(request_one))
        await asyncio.sleep(1.0)
        assert not writer.done()  # waiting on the user's sync_requests key
        await conn.commit()
    event = await writer
    assert (event.user.version, event.user.sync_requested, event.user.due_at) == (
        before.version + 2,
        True,
        7,
    )
    assert user_id not in await _pending(db, world)
    assert (await _seen(db, world.tenant, [user_id]))[user_id] == event.user


@pytest.mark.parametrize("status", [None, "SYNCED"])
async def test_batch_reads_show_pending_requests(world: World, status: str | None) -> None:
    """The CSV export's batches (with a status: through its named index) overlay them too."""
    db = world.db
    before = await _seen(db, world.tenant, world.synced)
    await _request(world, UserFilter(email_contains="u1@"))
    filt = UserFilter(status=status)
    rows = [
        r
        for part in [b async for b in user_batches(db, world.tenant, filt, "EMAIL_ASC", 2)]
        for r in part
    ]
    assert {r.id for r in rows} >= set(world.synced)
    for row in rows:
        if row.id in world.synced:
            requested = row.id == world.synced[1]
            assert (row.sync_requested, row.version) == (
                requested,
                before[row.id].version + requested,
            )


async def test_claims_take_the_oldest_due_users_across_policies(world: World) -> None:
    """Due users of several policies: the oldest first whichever policy they have, none of an
    inactive policy. On PostgreSQL each policy's users are read with the policy in the index
    condition of ix_sync_users_due (a list of policies there was checked on each heap row)."""
    async with world.db.write() as session:
        second, _ = await create_policy(
            session, world.tenant, 0, PolicyInput("second", None, True, 1440, ["MAIL"])
        )
        paused, _ = await create_policy(
            session, world.tenant, 0, PolicyInput("paused", None, False, 1440, ["MAIL"])
        )
        ours, _ = await user_admin.add_users(
            session,
            world.tenant,
            0,
            [(f"s{i}@m.example", f"s{i}@g.example", second.id) for i in range(2)]
            + [("p@m.example", "p@g.example", paused.id)],
        )
        await session.flush()
        # Due at 1, 3 (second policy), 0 (paused: never claimed); the world's fresh user at 0.
        for user, due_at in zip(ours, (1, 3, 0), strict=True):
            await session.execute(
                update(SyncUser).where(SyncUser.id == user.id).values(due_at=due_at)
            )
        await session.execute(update(SyncUser).where(SyncUser.id == world.fresh).values(due_at=2))
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "due_at <=" in statement and "sync_requests" not in statement:
            statements.append((statement, params))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        runs, _ = await _claim(world, 3)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert [r.user_id for r in runs] == [ours[0].id, world.fresh, ours[1].id]
    if world.db.dialect != "postgresql":
        return
    assert len(statements) == 2  # one per active policy
    statement, params = statements[0]
    assert "sync_users.policy_id =" in statement, statement
    async with world.db.read() as session:
        conn = await session.connection()
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a tiny table: no index
        plan = "\n".join(
            str(row[0])
            for row in await conn.exec_driver_sql(
                "EXPLAIN " + statement.replace(" FOR UPDATE SKIP LOCKED", ""), params
            )
        )
    [condition] = [line for line in plan.splitlines() if "Index Cond" in line]
    assert "ix_sync_users_due" in plan and "policy_id = " in condition, plan


async def test_a_request_refreshes_the_statistics_of_a_nearly_empty_table(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: once a request has written ANALYZE_AFTER requests it ANALYZEs sync_requests
    if its statistics say fewer (cached generic plans of an empty table scan it all), once."""
    calls: list[Database] = []
    real = bulk_requests._refresh_statistics

    async def counted(db: Database) -> None:
        calls.append(db)
        await real(db)

    monkeypatch.setattr(bulk_requests, "_refresh_statistics", counted)
    monkeypatch.setattr(bulk_requests, "ANALYZE_AFTER", 2)
    monkeypatch.setattr(bulk_requests, "FIRST_RANGE", 1)  # a range per user: several ranges
    result, _ = await _request(world, UserFilter(policy_id=world.policy))
    assert result.requested == 5
    assert len(calls) == (1 if world.db.dialect == "postgresql" else 0)
    if world.db.dialect != "postgresql":
        return
    monkeypatch.setattr(bulk_requests, "ANALYZE_AFTER", 2**62)  # surely stale: it analyzes
    await real(world.db)
    async with world.db.read() as session:
        tuples = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE relname = 'sync_requests'")
        )
    assert tuples is not None and tuples >= 5  # this test's requests at least
