"""Realistic demo and benchmark data: policies (active and inactive, hourly to weekly), users in
every status, run history with warnings and failures, and changes in the last 24 hours.

Bulk inserts with executemany in large transactions (aiosqlite costs several times plain
sqlite3 per statement), ids assigned here, counters rebuilt once at the end."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.tokens import tenant_by_name
from app.domain.statuses import STATE_BEHIND, RunState, UserStatus
from app.domain.timeutil import MICROS_PER_MINUTE, minute_of, now_micros
from app.store import counters
from app.store.engine import SQLITE_CACHE_SIZE, Database
from app.store.models import FailedItem, Policy, SyncRun, SyncUser
from app.store.triage_counters import FINISHED_COLUMN, RUNS_STARTED, TriageMoves

POLICIES = (
    # name, description, active, interval minutes, services
    ("Executive mailboxes", "Hourly sync for leadership", True, 60, "MAIL,CALENDAR"),
    ("Sales team", "Mail and contacts every 4 hours", True, 240, "MAIL,CONTACTS"),
    ("Finance", "Mail every 6 hours", True, 360, "MAIL"),
    ("Engineering", "Daily sync of mail, calendar and drive", True, 1440, "MAIL,CALENDAR,DRIVE"),
    ("Legacy archive", "Weekly archive sync, paused", False, 10080, "MAIL"),
    ("Contractors", "Daily sync, pending approval", False, 1440, "MAIL"),
)
POLICY_WEIGHTS = (8, 20, 10, 45, 7, 10)
FIRST = (
    "alex",
    "sam",
    "maria",
    "john",
    "li",
    "priya",
    "omar",
    "anna",
    "lucas",
    "emma",
    "noah",
    "mia",
    "david",
    "sofia",
    "yuki",
    "fatima",
    "ivan",
    "chloe",
    "mateo",
    "zoe",
)
LAST = (
    "smith",
    "garcia",
    "chen",
    "patel",
    "mueller",
    "rossi",
    "kim",
    "nguyen",
    "silva",
    "johnson",
    "brown",
    "kowalski",
    "haddad",
    "tanaka",
    "dubois",
    "okafor",
)
RUN_ERRORS = (
    ("ERR_TOKEN_001", "Authentication token expired"),
    ("ERR_USER_404", "User not found in source tenant"),
    ("ERR_RATE_429", "API rate limit exceeded (Microsoft Graph throttling)"),
    ("ERR_QUOTA_507", "Destination mailbox storage quota exceeded"),
    ("ERR_PERM_403", "Insufficient permissions on the source mailbox"),
    ("ERR_LICENSE_402", "Destination user has no Google Workspace license"),
    ("ERR_HOLD_423", "Source mailbox is on litigation hold; export is blocked"),
)
ITEM_ERRORS = (
    ("message", "ERR_ITEM_SIZE", "Message exceeds the 25 MB destination size limit"),
    ("attachment", "ERR_ATTACH_BLOCKED", "Attachment type is blocked by the destination"),
    ("folder", "ERR_FOLDER_NAME", "Folder name contains characters not allowed in labels"),
    ("event", "ERR_EVENT_RECURRENCE", "Recurrence pattern is not supported"),
    ("contact", "ERR_CONTACT_INVALID", "Contact has no name or email address"),
)
BATCH = 20_000
SEED_CACHE_KIB = 1024 * 1024  # 1 GiB of page cache while seeding (SQLite)


@dataclass(slots=True)
class Batch:
    users: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    items: list[dict[str, Any]]
    changes: dict[int, int]
    triage: TriageMoves = field(default_factory=TriageMoves)  # failure reasons and trends


async def _next_id(conn: AsyncConnection, column: Any) -> int:
    return int(await conn.scalar(select(func.coalesce(func.max(column), 0))) or 0) + 1


async def seed(db: Database, tenant_name: str, users: int, rng_seed: int = 7) -> int:
    """Adds `users` users to the tenant (created if missing); returns the tenant id."""
    rng = random.Random(rng_seed)
    now = now_micros()
    async with db.write() as session:
        tenant = await tenant_by_name(session, tenant_name, create=True)
        assert tenant is not None
        existing = (
            await session.scalars(
                select(Policy).where(Policy.tenant_id == tenant.id).order_by(Policy.id)
            )
        ).all()
        if not existing:
            session.add_all(
                Policy(
                    tenant_id=tenant.id,
                    name=n,
                    description=d,
                    active=a,
                    sync_interval_minutes=i,
                    services=s,
                    user_count=0,
                    revision=0,
                    created_at=now,
                    updated_at=now,
                )
                for n, d, a, i, s in POLICIES
            )
            await session.flush()
            existing = (
                await session.scalars(
                    select(Policy).where(Policy.tenant_id == tenant.id).order_by(Policy.id)
                )
            ).all()
        tenant_id = tenant.id
        policies = [(p.id, p.active, p.sync_interval_minutes, p.services) for p in existing]
    weights = [POLICY_WEIGHTS[i % len(POLICY_WEIGHTS)] for i in range(len(policies))]
    sqlite = db.dialect == "sqlite"
    async with db.write_engine.connect() as conn:
        if sqlite:  # the one writer connection: room for the indexes' random inserts by email
            await conn.exec_driver_sql(f"PRAGMA cache_size=-{SEED_CACHE_KIB}")
        user_id = await _next_id(conn, SyncUser.id)
        run_id = await _next_id(conn, SyncRun.id)
        domain = f"{tenant_name.lower().replace(' ', '')[:20] or 'tenant'}"
        n_existing = int(
            await conn.scalar(select(func.count()).where(SyncUser.tenant_id == tenant_id)) or 0
        )

    def make(done: int, first_user: int, first_run: int) -> Batch:
        size = min(BATCH, users - done)
        return _make_batch(
            rng,
            tenant_id,
            policies,
            weights,
            first_user,
            first_run,
            n_existing + done,
            size,
            now,
            domain,
        )

    # Each batch is made in a thread while the one before is written: SQLite's inserts run
    # without the GIL, so making rows and writing them overlap on two cores.
    pending = asyncio.create_task(asyncio.to_thread(make, 0, user_id, run_id)) if users else None
    done = 0
    try:
        while pending is not None:
            batch = await pending
            done += len(batch.users)
            user_id += len(batch.users)
            run_id += len(batch.runs)
            pending = (
                asyncio.create_task(asyncio.to_thread(make, done, user_id, run_id))
                if done < users
                else None
            )
            await _write(db, tenant_id, batch)
    finally:
        if pending is not None:
            pending.cancel()
    async with db.write() as session:
        await counters.recount(session, tenant_id)
        if sqlite:
            await session.execute(text(f"PRAGMA cache_size={SQLITE_CACHE_SIZE}"))
        if session.bind.dialect.name == "postgresql":
            for table in ("sync_users", "sync_runs", "failed_items"):
                await session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table}))"
                    )
                )
    return tenant_id


async def _insert(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        await conn.execute(insert(table), rows)
        return
    # The driver's executemany with tuples: SQLAlchemy's per-row parameter processing is a
    # good part of a million-row load, and SQLite takes Python ints, strs, bools and None.
    columns = list(rows[0])
    sql = (
        f"INSERT INTO {table.__tablename__} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    await conn.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in rows])


async def _write(db: Database, tenant_id: int, batch: Batch) -> None:
    async with db.write() as session:
        conn = await session.connection()
        await _insert(conn, SyncUser, batch.users)
        await _insert(conn, SyncRun, batch.runs)
        await _insert(conn, FailedItem, batch.items)
        await conn.run_sync(_count, tenant_id, batch)


def _count(conn: Connection, tenant_id: int, batch: Batch) -> None:
    for minute, changes in sorted(batch.changes.items()):
        counters.add_changes(conn, tenant_id, minute * MICROS_PER_MINUTE, changes)
    counters.apply_triage(conn, tenant_id, batch.triage)


def _pick_status(rng: random.Random) -> UserStatus:
    r = rng.random()
    if r < 0.62:
        return UserStatus.SYNCED
    if r < 0.74:
        return UserStatus.COMPLETED_WITH_WARNING
    if r < 0.82:
        return UserStatus.FAILED
    if r < 0.87:
        return UserStatus.IN_PROGRESS
    return UserStatus.NEVER_SYNCED


def _make_batch(
    rng: random.Random,
    tenant_id: int,
    policies: list[tuple[int, bool, int, str]],
    weights: list[int],
    first_user_id: int,
    first_run_id: int,
    ordinal: int,
    size: int,
    now: int,
    domain: str,
) -> Batch:
    batch = Batch([], [], [], {})
    run_id = first_run_id
    for offset in range(size):
        uid = first_user_id + offset
        n = ordinal + offset
        local = f"{rng.choice(FIRST)}.{rng.choice(LAST)}{n}"
        policy_id, active, interval, services = rng.choices(policies, weights)[0]
        status = _pick_status(rng)
        user: dict[str, Any] = {
            "id": uid,
            "tenant_id": tenant_id,
            "email": f"{local}@{domain}.onmicrosoft.com",
            "destination_email": f"{local}@{domain}.com",
            "policy_id": policy_id,
            "status": status,
            "latest_sync_at": None,
            "latest_sort": 0,
            "due_at": now,
            "sync_requested": False,
            "current_run_id": None,
            "last_finished_run_id": None,
            "unresolved_failure_count": 0,
            "version": 1,
            "created_at": now,
            "error_code": None,
        }
        batch.users.append(user)
        if status == UserStatus.NEVER_SYNCED:
            continue
        interval_us = interval * MICROS_PER_MINUTE
        latest = now - int(rng.uniform(0.02, 1.3 if active else 3.0) * interval_us)
        history = rng.choice((1, 2, 2, 3))
        starts = sorted(latest - k * interval_us for k in range(history))
        # Some failing users failed twice in a row: unresolvedFailureCount counts both.
        failed_twice = status == UserStatus.FAILED and history > 1 and rng.random() < 0.3
        for k, started in enumerate(starts):
            last = k == history - 1
            repeated = failed_twice and k == history - 2
            # The run that left the user in its status; earlier ones succeeded.
            state = STATE_BEHIND[status if last or repeated else UserStatus.SYNCED]
            service = services.split(",")[0]
            run = _run(rng, run_id, tenant_id, uid, k == 0, service, state, started, now)
            batch.runs.append(run)
            batch.triage.count(started, RUNS_STARTED)
            if run["finished_at"] is not None:
                batch.triage.count(run["finished_at"], FINISHED_COLUMN[state])
            if state == RunState.FAILED:  # the user's cause when it is its last run
                batch.triage.failed(run["error_code"], run["error_message"], run["finished_at"], 0)
                if last:
                    user["error_code"] = run["error_code"]
                    batch.triage.users[run["error_code"]] += 1
            if state == RunState.COMPLETED_WITH_WARNING:
                items = list(_items(rng, tenant_id, run_id, run["finished_at"]))
                run["items_failed"] = len(items)
                batch.items.extend(items)
            if started > now - 24 * 60 * MICROS_PER_MINUTE and run["changes"]:
                minute = minute_of(run["finished_at"] or now)
                batch.changes[minute] = batch.changes.get(minute, 0) + run["changes"]
                batch.triage.count(minute * MICROS_PER_MINUTE, "changes", run["changes"])
            if state == RunState.RUNNING:
                user["current_run_id"] = run_id
            else:
                user["last_finished_run_id"] = run_id
            user["version"] += 2 if state != RunState.RUNNING else 1
            run_id += 1
        user["latest_sync_at"] = user["latest_sort"] = latest
        user["due_at"] = latest + interval_us
        if status == UserStatus.FAILED:
            user["unresolved_failure_count"] = 2 if failed_twice else 1
    return batch


def _run(
    rng: random.Random,
    run_id: int,
    tenant_id: int,
    user_id: int,
    initial: bool,
    service: str,
    state: str,
    started: int,
    now: int,
) -> dict[str, Any]:
    total = rng.randint(2_000, 40_000) if initial else rng.randint(5, 1_500)
    running = state == RunState.RUNNING
    processed = rng.randint(0, total) if running else total
    duration = int(rng.uniform(20, 1_800 if initial else 240) * 1_000_000)
    code, message = rng.choice(RUN_ERRORS) if state == RunState.FAILED else (None, None)
    if state == RunState.FAILED:
        processed = rng.randint(0, total // 3)
    return {
        "id": run_id,
        "tenant_id": tenant_id,
        "user_id": user_id,
        "kind": "INITIAL" if initial else "DELTA",
        "service": service,
        "state": state,
        "started_at": started,
        "finished_at": None if running else min(now, started + duration),
        "items_total": total,
        "items_processed": processed,
        "items_failed": 0,
        "changes": processed // rng.randint(5, 20),
        "error_code": code,
        "error_message": message,
    }


def _items(
    rng: random.Random, tenant_id: int, run_id: int, failed_at: int
) -> Iterator[dict[str, Any]]:
    for k in range(rng.randint(1, 4)):
        item_type, code, message = rng.choice(ITEM_ERRORS)
        yield {
            "tenant_id": tenant_id,
            "run_id": run_id,
            "item_id": f"{item_type}-{run_id}-{k}",
            "item_type": item_type,
            "error_code": code,
            "error_message": message,
            "failed_at": failed_at,
        }
