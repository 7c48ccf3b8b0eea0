"""requestSyncs: "sync now" for every user a filter selects, in short write transactions.

The tenant's users are walked in id ranges: each write transaction is one set-based INSERT of
a pending request (sync_requests, app.store.pending_requests) for the range's users the filter
selects (app.lifecycle.sql.BulkRequest), so it costs the rows it reads, not a statement per
user, and leaves the users' rows and their many indexes alone. Ranges are sized so a
transaction holds the write lock (SQLite) or its users' sync_requests keys (PostgreSQL, where
it locks no user: a writer of a user it is requesting waits for it, see
app.store.pending_requests) about TARGET_SECONDS: workers' reports queue between them instead
of behind the whole request. On PostgreSQL a run a claim starts meanwhile leaves its user
requested too (counted requested; app.lifecycle.sql.BulkRequest).
Each transaction announces its users with one UsersRequested event (a range, a time window and
a count), never an event per user: each process loads the users its subscribers watch
(subscriptions/hub.py).

On PostgreSQL a request also refreshes sync_requests' statistics once it has written
ANALYZE_AFTER requests into a table they describe as (nearly) empty: see _refresh_statistics."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import DBAPIError

from app.domain.ids import encode_id
from app.domain.timeutil import from_micros
from app.events.messages import Event, Publisher, UsersRequested
from app.lifecycle import transitions
from app.lifecycle.sql import BulkRequest
from app.reads.users import UserFilter, check_filter, conditions
from app.store.engine import Database
from app.store.models import SyncUser
from app.store.unit_of_work import write

log = logging.getLogger("syncstatus.bulk")
TARGET_SECONDS = 0.03  # per write transaction: the longest stay under ~100 ms on a busy machine
# Ids per range: the first is small (the machine's speed is unknown), then aimed at the target.
FIRST_RANGE, MIN_RANGE, MAX_RANGE = 1000, 100, 1_000_000
SLOW_SECONDS = 0.1  # a transaction held longer is counted (BulkResult.slow) and logged
ANALYZE_AFTER = 10_000  # PostgreSQL: requests written before sync_requests is analyzed


@dataclass(slots=True)
class BulkResult:
    requested: int = 0
    skipped: int = 0
    transactions: int = 0
    # The longest write transaction, from its first statement until committed and announced.
    longest_seconds: float = 0.0
    # The longest write as its caller waited for it: queueing for SQLite's writer included.
    longest_write_seconds: float = 0.0
    slow: int = 0  # transactions longer than SLOW_SECONDS
    held: list[float] = field(default_factory=list)  # each transaction's, as longest_seconds


async def _id_bounds(db: Database, tenant_id: int, filt: UserFilter) -> tuple[int, int] | None:
    """The lowest and highest id the filter selects now (a read, through the filter's indexes);
    users it selects later, outside them, were not matching when the request began."""
    where = conditions(tenant_id, db.dialect, filt)  # SQLite: the trigram index for a search
    async with db.read() as session:
        row = (
            await session.execute(
                select(func.min(SyncUser.id), func.max(SyncUser.id)).where(*where)
            )
        ).one()
    return None if row[0] is None else (int(row[0]), int(row[1]))


async def _refresh_statistics(db: Database) -> None:
    """PostgreSQL: ANALYZE sync_requests if its statistics say it holds under ANALYZE_AFTER
    rows. The table is empty between bulk requests, and the generic plans that sessions cache
    for their prepared statements (asyncpg prepares each) keep the estimate they were made with:
    an empty table's is a sequential scan. At 788,000 requests each worker's fold DELETE then
    scanned them all (130 ms) and a claim sorted them on disk (2.4 s). ANALYZE invalidates those
    plans in every session; made again for ~10,000 rows they use the primary key and
    ix_sync_requests_due, which stay right however many rows follow. It takes no lock that
    writers wait for; one already running (autovacuum's) makes it give up after 100 ms."""
    try:
        async with db.write_engine.begin() as conn:
            stale = await conn.scalar(
                text("SELECT reltuples < :rows FROM pg_class WHERE relname = 'sync_requests'"),
                {"rows": ANALYZE_AFTER},
            )
            if stale:
                await conn.execute(text("SET LOCAL lock_timeout = '100ms'"))
                await conn.execute(text("ANALYZE sync_requests"))
    except DBAPIError:
        log.info("ANALYZE sync_requests skipped: the table is being analyzed")


async def request_syncs(
    db: Database,
    publisher: Publisher,
    tenant_id: int,
    filt: UserFilter,
    result: BulkResult | None = None,
) -> BulkResult:
    """Fills `result` as it goes: a request cut short (its caller went away) still tells
    what it did."""
    check_filter(filt)
    result = result if result is not None else BulkResult()
    bounds = await _id_bounds(db, tenant_id, filt)
    if bounds is None:
        return result
    lo, last = bounds
    # Every filter column as `col + 0` (SQLite): the rows are found by id, never another index.
    where = conditions(tenant_id, db.dialect, filt, indexed=frozenset(), search="like")
    statements = BulkRequest.of(db.dialect, tenant_id, where)
    size = FIRST_RANGE
    analyzed = db.dialect != "postgresql"
    while lo <= last:
        hi = min(last, lo + size - 1)

        def change(conn: Connection, now: int, lo: int = lo, hi: int = hi) -> Any:
            began = time.perf_counter()
            requested, skipped = transitions.request_syncs_between(conn, statements, lo, hi, now)
            events: list[Event] = []
            if requested:
                events.append(UsersRequested(tenant_id, lo, hi, now, now, requested))
            return (requested, skipped, began), events

        called = time.perf_counter()
        requested, skipped, began = await write(db, publisher, change)
        done = time.perf_counter()
        # The commit counts: on SQLite it writes every page the UPDATE dirtied to the WAL (and
        # may checkpoint), which can take longer than the statements. This also counts the
        # hop back to the event loop and the event's publishing: an upper bound.
        held = done - began
        result.requested += requested
        result.skipped += skipped
        result.transactions += 1
        result.longest_seconds = max(result.longest_seconds, held)
        result.held.append(held)
        if held > SLOW_SECONDS:
            result.slow += 1
        result.longest_write_seconds = max(result.longest_write_seconds, done - called)
        # Aim the next range at TARGET_SECONDS, growing at most twofold at a time.
        scaled = int(size * TARGET_SECONDS / max(held, 1e-4))
        size = max(MIN_RANGE, min(MAX_RANGE, 2 * size, scaled))
        lo = hi + 1
        if not analyzed and result.requested >= ANALYZE_AFTER:
            analyzed = True
            await _refresh_statistics(db)
    return result


def describe(filt: UserFilter) -> dict[str, Any]:
    return {key: value for key, value in asdict(filt).items() if value is not None}


FILTER_NAMES = {
    "email_contains": "emailContains",
    "latest_sync_from": "latestSyncFrom",
    "latest_sync_to": "latestSyncTo",
    "policy_id": "policyId",
    "status": "status",
    "error_code": "errorCode",
}


def summary(filt: UserFilter, result: BulkResult, complete: bool) -> str:
    """The audit log's line for a bulk request."""
    parts = []
    for key, value in describe(filt).items():
        if key in ("latest_sync_from", "latest_sync_to"):
            value = from_micros(value).isoformat().replace("+00:00", "Z")
        elif key == "policy_id":
            value = encode_id("Policy", value)
        parts.append(f"{FILTER_NAMES[key]}={value!r}")
    matching = f"matching {', '.join(parts)}" if parts else "of all users"
    cut = "" if complete else " (cut short)"
    return (
        f"Requested syncs of {result.requested:,} users {matching}; {result.skipped:,} skipped{cut}"
    )


def record(
    tenant_id: int, actor: str, filt: UserFilter, result: BulkResult, *, complete: bool = True
) -> None:
    """Logs a bulk request once done or cut short (the resolver adds its audit event)."""
    log.info(
        "requestSyncs tenant=%s actor=%s filter=%s requested=%d skipped=%d "
        "transactions=%d slow=%d longest=%.1fms longest_write=%.1fms%s",
        tenant_id,
        actor,
        describe(filt),
        result.requested,
        result.skipped,
        result.transactions,
        result.slow,
        result.longest_seconds * 1000,
        result.longest_write_seconds * 1000,
        "" if complete else " (cut short)",
    )
