"""The Sync Status table's exact totals and keyset pages against brute force, on SQLite, on
every access path the planner may choose (app/reads/users.py), with latestSyncAt bounds on and
around the hour edges of the latest_counts counters, in a file with one tenant and with two.
And the counters kept by the run lifecycle equal a recount."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select

from app.admin import user_admin
from app.domain.timeutil import MICROS_PER_HOUR
from app.lifecycle import transitions
from app.reads import users as reads
from app.reads.pagination import PageArgs
from app.store import counters
from app.store.engine import Database, open_database
from app.store.migrate import upgrade
from app.store.models import LatestCount, Policy, StatusCount, SyncUser, Tenant

H = MICROS_PER_HOUR
BASE = 1_790_000_000_000_000 // H * H  # an hour's start
HOURS = 30
FIRST = ("anna", "garcia", "li", "omar", "zoe", "maria")
LAST = ("garcia", "chen", "smith", "li")
TERMS = (None, "garcia", "ann", "a", "li", "x1.ex", "zz", "@dest", "a.g", "maria.chen1", "%", "_")


@dataclass
class World:
    db: Database
    tenant: int
    policies: list[int]
    foreign_policy: int
    users: list[dict[str, Any]]


def _latest(rng: random.Random) -> int:
    hour = BASE + rng.randrange(HOURS) * H
    return rng.choice((hour, hour - 1, hour + 1, hour + rng.randrange(H)))


async def _world(tenants: int) -> AsyncIterator[World]:
    with tempfile.TemporaryDirectory(prefix="syncstatus-reads-") as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'reads.db'}"
        await asyncio.to_thread(upgrade, url)
        db = open_database(url)
        rng = random.Random(tenants)
        all_users: dict[int, list[dict[str, Any]]] = {}
        policies: dict[int, list[int]] = {}
        async with db.write() as session:
            for t in range(tenants):
                tenant = Tenant(name=f"t{t}", created_at=0)
                session.add(tenant)
                await session.flush()
                rows = [
                    Policy(
                        tenant_id=tenant.id,
                        name=f"p{k}",
                        active=True,
                        sync_interval_minutes=60,
                        services="MAIL",
                        user_count=0,
                        revision=0,
                        created_at=0,
                        updated_at=0,
                    )
                    for k in range(3)
                ]
                session.add_all(rows)
                await session.flush()
                policies[tenant.id] = [p.id for p in rows]
                users: list[dict[str, Any]] = []
                for i in range(1200 if t == 0 else 300):
                    status = rng.choice(reads.STATUSES)
                    latest = 0 if status == "NEVER_SYNCED" else _latest(rng)
                    local = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{i}"
                    users.append(
                        {
                            "tenant_id": tenant.id,
                            "email": f"{local}@x{t}.example",
                            "destination_email": f"{local.replace('.', '_')}@dest.example",
                            "policy_id": rng.choice([None, *policies[tenant.id]]),
                            "status": status,
                            "latest_sync_at": latest or None,
                            "latest_sort": latest,
                            "due_at": None,
                            "sync_requested": False,
                            "unresolved_failure_count": 0,
                            "version": 1,
                            "created_at": 0,
                        }
                    )
                await session.execute(insert(SyncUser), users)
                await counters.recount(session, tenant.id)
                all_users[tenant.id] = users
        async with db.read() as session:
            for tenant_id, users in all_users.items():
                ids = await session.execute(
                    select(SyncUser.email, SyncUser.id).where(SyncUser.tenant_id == tenant_id)
                )
                by_email = dict(ids.all())
                for user in users:
                    user["id"] = by_email[user["email"]]
        first = min(all_users)
        foreign = [p for t, ps in policies.items() if t != first for p in ps]
        try:
            yield World(
                db, first, policies[first], foreign[0] if foreign else 10**6, all_users[first]
            )
        finally:
            await db.dispose()


@pytest.fixture(scope="module", params=[1, 2], ids=["one-tenant", "two-tenants"])
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async for built in _world(request.param):
        yield built


def _bound(rng: random.Random) -> int | None:
    if rng.random() < 0.3:
        return None
    hour = BASE + rng.randrange(-1, HOURS + 1) * H
    return rng.choice((hour, hour - 1, hour + 1, hour + rng.randrange(H), hour + H // 2))


def _filters(world: World, count: int) -> list[reads.UserFilter]:
    rng = random.Random(42)
    found: list[reads.UserFilter] = []
    while len(found) < count:
        low, high = _bound(rng), _bound(rng)
        if low is not None and high is not None and low > high:
            low, high = high, low
        found.append(
            reads.UserFilter(
                email_contains=rng.choice(TERMS),
                latest_sync_from=low,
                latest_sync_to=high,
                policy_id=rng.choice([None, None, *world.policies, world.foreign_policy]),
                status=rng.choice([None, None, *reads.STATUSES]),
            )
        )
    return found


def _matches(user: dict[str, Any], filt: reads.UserFilter) -> bool:
    if filt.status is not None and user["status"] != filt.status:
        return False
    if filt.policy_id is not None and user["policy_id"] != filt.policy_id:
        return False
    latest = user["latest_sort"]
    if filt.ranged and latest <= 0:
        return False
    if filt.latest_sync_from is not None and latest < filt.latest_sync_from:
        return False
    if filt.latest_sync_to is not None and latest > filt.latest_sync_to:
        return False
    term = filt.term
    return not term or term in user["email"] or term in user["destination_email"]


def _expected(world: World, filt: reads.UserFilter, order: str) -> list[int]:
    found = [u for u in world.users if _matches(u, filt)]
    if order == "EMAIL_ASC":
        found.sort(key=lambda u: (u["email"], u["id"]))
    else:
        found.sort(key=lambda u: (u["latest_sort"], u["id"]), reverse=True)
    return [u["id"] for u in found]


async def _all_pages(world: World, filt: reads.UserFilter, order: str, access: Any) -> list[int]:
    ids: list[int] = []
    after = None
    async with world.db.read() as session:
        while True:
            result = await reads.user_page(
                session, world.tenant, filt, order, PageArgs(first=40, after=after), access=access
            )
            ids += [view.id for _, view in result.page.items]
            if not result.page.has_next:
                return ids
            after = result.page.items[-1][0]


def _accesses(filt: reads.UserFilter) -> list[Any]:
    found: list[Any] = [None, reads.BY_FILTERS, reads.Access(frozenset({"tenant"}))]
    if filt.status is not None:
        found.append(reads.BY_STATUS)
    if filt.status is not None and filt.policy_id is not None:
        found.append(reads.BY_STATUS_POLICY)
    if filt.term and len(filt.term) >= reads.TRIGRAM:
        found.append(reads.BY_TRIGRAMS)
    return found


async def test_counts_are_exact(world: World) -> None:
    for filt in _filters(world, 300):
        async with world.db.read() as session:
            total = await reads.user_count(session, world.tenant, filt)
        assert total == len(_expected(world, filt, "EMAIL_ASC")), filt


async def test_search_alone_is_exact(world: World) -> None:
    """Without other filters a search counts every tenant's trigram matches and takes away
    the other tenants' ones: exact whether the file holds one tenant or more."""
    for term in TERMS:
        filt = reads.UserFilter(email_contains=term)
        expected = _expected(world, filt, "EMAIL_ASC")
        async with world.db.read() as session:
            assert await reads.user_count(session, world.tenant, filt) == len(expected), term
        assert await _all_pages(world, filt, "EMAIL_ASC", None) == expected, term


@pytest.mark.parametrize("order", ["EMAIL_ASC", "LATEST_SYNC_DESC"])
async def test_pages_are_exact_on_every_access_path(world: World, order: str) -> None:
    for filt in _filters(world, 40):
        expected = _expected(world, filt, order)
        for access in _accesses(filt):
            assert await _all_pages(world, filt, order, access) == expected, (filt, access)


async def test_status_and_policy_are_read_inside_their_own_index(world: World) -> None:
    """All filters combined: every statement of the count reads ix_sync_users_status_policy
    (only the users of that status and policy), not the status's whole range or the table.
    (Before the lifecycle test below, which moves users away from world.users.)"""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM sync_users" in statement:
            statements.append((statement, params))

    engine = world.db.read_engine.sync_engine
    filt = reads.UserFilter(
        email_contains="garcia",
        status="FAILED",
        policy_id=world.policies[0],
        latest_sync_from=BASE + H // 2,
        latest_sync_to=BASE + (HOURS - 2) * H + H // 3,
    )
    event.listen(engine, "before_cursor_execute", record)
    try:
        async with world.db.read() as session:
            assert await reads.user_count(session, world.tenant, filt) == len(
                _expected(world, filt, "EMAIL_ASC")
            )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(statements) >= 2  # the date range's partial hours, then the search
    async with world.db.read() as session:
        conn = await session.connection()
        for statement, params in statements:
            plan = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            details = [row[-1] for row in plan]
            used = [d for d in details if "sync_users" in d and "sync_users_search" not in d]
            assert used and all("ix_sync_users_status_policy" in d for d in used), details


async def _counter_rows(db: Database, tenant_id: int) -> tuple[set[Any], set[Any]]:
    async with db.read() as session:
        status = await session.execute(
            select(StatusCount.policy_key, StatusCount.status, StatusCount.count).where(
                StatusCount.tenant_id == tenant_id, StatusCount.count != 0
            )
        )
        latest = await session.execute(
            select(
                LatestCount.hour, LatestCount.policy_key, LatestCount.status, LatestCount.count
            ).where(LatestCount.tenant_id == tenant_id, LatestCount.count != 0)
        )
        return set(status.all()), set(latest.all())


async def test_lifecycle_keeps_the_counters_of_a_recount(world: World) -> None:
    rng = random.Random(7)
    ids = [u["id"] for u in world.users]
    now = BASE + HOURS * H

    def runs(conn: Connection) -> int:
        at = now
        for user_id in rng.sample(ids, 60):
            user = transitions.load_user(conn, world.tenant, user_id)
            if user.view.current_run_id is not None:
                continue
            at += rng.randrange(2 * H)
            started, _ = transitions.start_run(conn, user, at)
            if rng.random() < 0.7:
                run, user = transitions.load_run(conn, world.tenant, started.id)
                transitions.finish_run(
                    conn, run, user, at + 5, error_code="E" if rng.random() < 0.3 else None
                )
        return at

    now = await world.db.run_write(runs)
    async with world.db.write() as session:
        await user_admin.assign_policy(
            session, world.tenant, now, rng.sample(ids, 40), rng.choice(world.policies)
        )
    kept = await _counter_rows(world.db, world.tenant)
    async with world.db.write() as session:
        await counters.recount(session, world.tenant)
    assert kept == await _counter_rows(world.db, world.tenant)
