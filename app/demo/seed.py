"""Realistic demo and benchmark data: policies (active and inactive, hourly to weekly), users in
every status, run history with warnings and failures, and changes in the last 24 hours.

One transaction on the driver's own connection: SQLite's executemany of plain tuples on the
writer thread, PostgreSQL's COPY (asyncpg). Rows are made in batches (for PostgreSQL in a
thread, one batch ahead of the one being written), ids are assigned here, and the counters get
the rows' exact deltas at the end. A load that at least doubles the tables builds their
indexes after it (app.store.bulk_load). 100,000 users on SQLite: 6.1 s of CPU instead of
14.9 s (bench/README.md, bench/seed.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, select, text, update

from app.auth.tokens import tenant_by_name
from app.demo.seed_rows import (
    ITEM_COLUMNS,
    RUN_COLUMNS,
    USER_COLUMNS,
    RowMaker,
    Rows,
    SeedPolicy,
    Tally,
)
from app.demo.simulation import ITEM_ERRORS, RUN_ERRORS
from app.domain.timeutil import MICROS_PER_MINUTE, now_micros
from app.store import bulk_load, counters
from app.store.engine import Database
from app.store.models import Policy

log = logging.getLogger(__name__)

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
NAMES = [f"{first}.{last}" for first in FIRST for last in LAST]
BATCH = 20_000
# Where the new rows start, and how many users there are already.
START = """SELECT (SELECT coalesce(max(id), 0) FROM sync_users),
                  (SELECT coalesce(max(id), 0) FROM sync_runs),
                  (SELECT count(*) FROM sync_users WHERE tenant_id = {tenant}),
                  (SELECT count(*) FROM sync_users)"""


@dataclass(frozen=True, slots=True)
class Start:
    user_id: int  # the first new user's id
    run_id: int
    ordinal: int  # numbers the new users' emails after the tenant's existing ones
    defer_indexes: bool

    @classmethod
    def of(cls, row: Any, users: int) -> Start:
        max_user, max_run, in_tenant, everyone = (int(v) for v in row)
        return cls(max_user + 1, max_run + 1, in_tenant, bulk_load.worth_deferring(users, everyone))


async def seed(db: Database, tenant_name: str, users: int, rng_seed: int = 7) -> int:
    """Adds `users` users to the tenant (created if missing); returns the tenant id."""
    now = now_micros()
    tenant_id, policies = await _tenant(db, tenant_name, now)
    if users <= 0:
        return tenant_id
    weights = [POLICY_WEIGHTS[i % len(POLICY_WEIGHTS)] for i in range(len(policies))]
    domain = f"{tenant_name.lower().replace(' ', '')[:20] or 'tenant'}"
    maker = RowMaker(
        rng_seed, tenant_id, policies, weights, NAMES, RUN_ERRORS, ITEM_ERRORS, domain, now
    )
    if db.dialect == "sqlite":
        await db.run_write(partial(_load_sqlite, maker, users))
        await _checkpoint(db)
    else:
        await _load_postgres(db, maker, users)
    return tenant_id


async def _tenant(db: Database, tenant_name: str, now: int) -> tuple[int, list[SeedPolicy]]:
    """The tenant and its policies, made when missing."""
    async with db.write() as session:
        tenant = await tenant_by_name(session, tenant_name, create=True)
        assert tenant is not None
        query = select(Policy).where(Policy.tenant_id == tenant.id).order_by(Policy.id)
        existing = (await session.scalars(query)).all()
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
            existing = (await session.scalars(query)).all()
        policies = [
            SeedPolicy(p.id, p.active, p.sync_interval_minutes, p.services) for p in existing
        ]
        return tenant.id, policies


def _batches(maker: RowMaker, start: Start, users: int) -> Iterator[Rows]:
    """The users in batches, each made when asked for.

    SQLite makes them on its writer thread between its inserts, not in a thread beside them:
    executemany gives up the GIL around each row's step, and with a thread of pure Python
    beside it took it back only when that thread's switch interval ran out (a million users:
    the users' inserts took 13.7 s, made in turn 5.0 s plus 7.5 s making)."""
    user_id, run_id, done = start.user_id, start.run_id, 0
    while done < users:
        rows = maker.make(user_id, run_id, start.ordinal + done, min(BATCH, users - done))
        done += len(rows.users)
        user_id += len(rows.users)
        run_id += len(rows.runs)
        yield rows


def _one_ahead(batches: Iterator[Rows]) -> Generator[Rows, None, None]:
    """The batches, each made in a thread while the caller writes the one before (PostgreSQL:
    COPY's server side runs on the other core)."""
    with ThreadPoolExecutor(1, thread_name_prefix="seed-rows") as pool:
        pending = pool.submit(next, batches, None)
        while (rows := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield rows


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


# (id, email, destination_email) of a user row, for SQLite's search index.
EMAILS = itemgetter(*(USER_COLUMNS.index(c) for c in ("id", "email", "destination_email")))
INSERTS = (
    ("users", _insert_sql("sync_users", USER_COLUMNS)),
    ("runs", _insert_sql("sync_runs", RUN_COLUMNS)),
    ("items", _insert_sql("failed_items", ITEM_COLUMNS)),
)


def _load_sqlite(maker: RowMaker, users: int, conn: Connection) -> None:
    """The whole load, one transaction on the writer thread's connection."""
    raw = conn.connection.driver_connection
    assert raw is not None
    start = Start.of(raw.execute(START.format(tenant="?"), (maker.tenant_id,)).fetchone(), users)
    with bulk_load.sqlite_load(raw, start.defer_indexes) as search:
        for rows in _batches(maker, start, users):
            if search is not None:
                search.add(map(EMAILS, rows.users))
            for name, sql in INSERTS:
                raw.executemany(sql, getattr(rows, name))
    _count(conn, maker.tenant_id, maker.tally)


async def _checkpoint(db: Database) -> None:
    """Copy the load out of the WAL and truncate it (it grew to the size of the load), so that
    readers read the file, not a WAL as big as the load."""
    writer = db.sqlite_writer
    if writer is not None and not await writer.truncate_wal():
        log.warning("the seed's WAL could not be truncated now: a reader is using it")


def _count(conn: Connection, tenant_id: int, tally: Tally) -> None:
    """The new rows' counter deltas: users per status, policy and latest hour, failure
    reasons, trends, changes per minute, policy user counts."""
    tally.settle().apply(conn, tenant_id)
    for minute, changes in sorted(tally.changes.items()):
        counters.add_changes(conn, tenant_id, minute * MICROS_PER_MINUTE, changes)
    for policy_id, added in sorted(tally.policy_users.items()):
        conn.execute(
            update(Policy)
            .where(Policy.id == policy_id)
            .values(user_count=Policy.user_count + added)
        )


async def _load_postgres(db: Database, maker: RowMaker, users: int) -> None:
    """The whole load in one transaction: COPY of each batch (asyncpg) while the next is made."""
    async with db.write_engine.begin() as conn:
        # Through SQLAlchemy first: that begins the transaction COPY then joins.
        start_sql = text(START.format(tenant=":tenant"))
        found = (await conn.execute(start_sql, {"tenant": maker.tenant_id})).one()
        start = Start.of(found, users)
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None  # asyncpg's connection, pooled
        loading = bulk_load.postgres_load(raw, start.defer_indexes)
        async with loading:
            with closing(_one_ahead(_batches(maker, start, users))) as batches:
                while (rows := await asyncio.to_thread(next, batches, None)) is not None:
                    for table, records, columns in (
                        ("sync_users", rows.users, USER_COLUMNS),
                        ("sync_runs", rows.runs, RUN_COLUMNS),
                        ("failed_items", rows.items, ITEM_COLUMNS),
                    ):
                        if records:
                            await raw.copy_records_to_table(table, records=records, columns=columns)
        await conn.run_sync(_count, maker.tenant_id, maker.tally)
        for table in ("sync_users", "sync_runs", "failed_items"):
            await conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
            )
