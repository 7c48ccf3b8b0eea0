"""requestSyncs below the API (app.lifecycle.bulk_requests) walked in ranges of 3 ids, on SQLite
and PostgreSQL: users at every range edge, users skipped (running, inactive policy, no policy),
filters combined, another tenant's users interleaved in the id space. The counts equal what
changed, only the requested users change as readers see them (by one version each; their rows
stay as they were, a request pending beside each), the counters do not move
(a request changes no status), and each transaction's one event covers exactly its users."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Connection, select

import tests.server as server_helpers
from app.admin import user_admin
from app.admin.policies import PolicyInput, create_policy
from app.domain.timeutil import MICROS_PER_HOUR
from app.events.messages import Publisher, UsersRequested, decode
from app.lifecycle import bulk_requests, transitions
from app.reads.users import COLUMNS, UserFilter
from app.store.engine import Database
from app.store.models import (
    FailureReason,
    LatestCount,
    StatusCount,
    SyncRequest,
    SyncUser,
    Tenant,
)

RANGE = 3
NOW = 1_790_000_000_000_000 // MICROS_PER_HOUR * MICROS_PER_HOUR
USERS = 24  # of the tenant; as many of another tenant, their ids interleaved


class Recorded:
    """A broadcast that keeps what is published (the real Publisher encodes it)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def publish(self, channel: str, message: Any) -> None:
        self.messages.append(message)


@dataclass
class World:
    db: Database
    tenant: int
    other: int
    active: int
    paused: int


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of the module's own: the tests compare every user before and after, and on
    the session's database the session server's reaper ends the runs these worlds leave
    running (they started long ago, at NOW) whenever it looks."""
    with server_helpers.throwaway_database(request.param) as url:
        yield url


@pytest.fixture
def tiny_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FIRST_RANGE", "MIN_RANGE", "MAX_RANGE"):
        monkeypatch.setattr(bulk_requests, name, RANGE)


async def _run(db: Database, tenant_id: int, user_id: int, now: int, end: str | None) -> None:
    """A run of the user: left running (end None), or finished with error code `end` ("" for
    a success)."""

    def change(conn: Connection) -> None:
        run, _ = transitions.start_run(conn, transitions.load_user(conn, tenant_id, user_id), now)
        if end is not None:
            found, user = transitions.load_run(conn, tenant_id, run.id)
            transitions.finish_run(conn, found, user, now + 1, error_code=end or None)

    await db.run_write(change)


@pytest.fixture
async def world(db: Database) -> World:
    label = uuid.uuid4().hex[:8]
    async with db.write() as session:
        tenant, other = (
            Tenant(name=f"bulk-{label}", created_at=0),
            Tenant(name=f"other-{label}", created_at=0),
        )
        session.add_all([tenant, other])
        await session.flush()
        daily = ("d", None, True, 1440, ["MAIL"])
        active, _ = await create_policy(session, tenant.id, 0, PolicyInput(*daily))
        paused, _ = await create_policy(
            session, tenant.id, 0, PolicyInput("p", None, False, 1440, ["MAIL"])
        )
        theirs, _ = await create_policy(session, other.id, 0, PolicyInput(*daily))
        ids: dict[int, list[int]] = {tenant.id: [], other.id: []}
        for i in range(USERS):
            # Kinds cycle with the index, so every kind lands on every range edge.
            policy = {3: paused.id, 4: None}.get(i % 6, active.id)
            email = f"{'edge' if i % 4 == 1 else 'user'}{i}"
            for tenant_id, policy_id in ((tenant.id, policy), (other.id, theirs.id)):
                added, _ = await user_admin.add_users(
                    session,
                    tenant_id,
                    0,
                    [(f"{email}@m365.example", f"{email}@g.example", policy_id)],
                )
                ids[tenant_id] += [row.id for row in added]
        made = World(db, tenant.id, other.id, active.id, paused.id)
    for tenant_id, users in ids.items():
        for i, user_id in enumerate(users):
            # 0: never synced; 1, 3, 4: FAILED (ERR_A; inactive policy; no policy);
            # 2: running; 5: synced.
            end = {0: None, 1: "ERR_A", 2: None, 3: "ERR_A", 4: "ERR_A", 5: ""}[i % 6]
            if i % 6 != 0:
                await _run(db, tenant_id, user_id, NOW + i * MICROS_PER_HOUR, end)
    return made


async def _users(db: Database) -> dict[int, Any]:
    """Every user as readers see it (pending requests overlaid), with its pending request's
    time (None without one)."""
    pending = select(SyncRequest.requested_at).where(SyncRequest.user_id == SyncUser.id)
    async with db.read() as session:
        rows = (
            await session.execute(select(*COLUMNS, pending.scalar_subquery().label("requested_at")))
        ).all()
    return {row.id: row for row in rows}


async def _counters(db: Database) -> list[Any]:
    async with db.read() as session:
        found = []
        for model in (StatusCount, LatestCount, FailureReason):
            found += [tuple(r) for r in (await session.execute(select(model.__table__))).all()]
    return sorted(found, key=repr)


def _matches(row: Any, world: World, filt: UserFilter) -> bool:
    if row.tenant_id != world.tenant:
        return False
    if filt.status is not None and row.status != filt.status:
        return False
    if filt.error_code is not None and row.error_code != filt.error_code:
        return False
    if filt.policy_id is not None and row.policy_id != filt.policy_id:
        return False
    if filt.latest_sync_from is not None and not 0 < filt.latest_sync_from <= row.latest_sort:
        return False
    term = filt.email_contains
    return term is None or term in row.email or term in row.destination_email


FILTERS = {
    "all": lambda w: UserFilter(),
    "failed": lambda w: UserFilter(status="FAILED"),
    "code+search": lambda w: UserFilter(error_code="ERR_A", email_contains="edge"),
    "policy+status": lambda w: UserFilter(policy_id=w.active, status="SYNCED"),
    "paused+code": lambda w: UserFilter(policy_id=w.paused, error_code="ERR_A"),
    "since+search": lambda w: UserFilter(
        latest_sync_from=NOW + 6 * MICROS_PER_HOUR, email_contains="user"
    ),
    "contradiction": lambda w: UserFilter(status="SYNCED", error_code="ERR_A"),
}


@pytest.mark.parametrize("name", FILTERS)
async def test_ranges_request_exactly_the_matching_users(
    world: World, tiny_ranges: None, name: str
) -> None:
    db, filt = world.db, FILTERS[name](world)
    before, counted = await _users(db), await _counters(db)
    matching = {i for i, row in before.items() if _matches(row, world, filt)}
    due = {
        i
        for i in matching
        if before[i].policy_id == world.active and before[i].current_run_id is None
    }
    recorded = Recorded()

    result = await bulk_requests.request_syncs(db, Publisher(recorded), world.tenant, filt)

    assert (result.requested, result.skipped) == (len(due), len(matching) - len(due))
    # Each filter selects someone (but the contradiction), and requests someone (but those
    # of the inactive policy, all skipped).
    assert bool(matching) == (name != "contradiction")
    assert bool(due) == (name not in ("contradiction", "paused+code"))
    after = await _users(db)
    events = [decode(m) for m in recorded.messages]
    assert all(isinstance(e, UsersRequested) for e in events)
    requested_events = [e for e in events if isinstance(e, UsersRequested)]
    assert sum(e.count for e in requested_events) == len(due)
    for user_id, row in after.items():
        old = before[user_id]._asdict()
        if user_id not in due:
            assert row._asdict() == old
            continue
        # The row itself is left alone (due_at too): the request is pending beside it.
        assert row._asdict() == {
            **old,
            "sync_requested": True,
            "version": old["version"] + 1,
            "requested_at": row.requested_at,
        }
        [event] = [e for e in requested_events if e.first_id <= user_id <= e.last_id]
        assert event.since <= row.requested_at <= event.until
    for event in requested_events:
        assert event.tenant_id == world.tenant
        assert event.last_id - event.first_id < RANGE
        inside = {i for i in due if event.first_id <= i <= event.last_id}
        assert event.count == len(inside) > 0
    if matching:  # one transaction per range, from the first matching id to the last
        assert result.transactions == -(-(max(matching) - min(matching) + 1) // RANGE)
    assert await _counters(db) == counted
