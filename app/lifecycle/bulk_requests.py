"""requestSyncs: "sync now" for every user a filter selects, in short write transactions.

The users are read in keyset batches outside any write; each write transaction then takes a
chunk of them, rechecks the filter on their current rows (they may have changed since the
read), and makes the ones with an active policy and no run running due at once, as
requestSync does for one user, events included. Chunks are sized so a transaction holds the
write lock (SQLite) or the users' row locks (PostgreSQL) about TARGET_SECONDS: workers'
reports queue between them instead of behind the whole request."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, select

from app.domain.ids import encode_id
from app.domain.timeutil import from_micros
from app.events.messages import Event, Publisher
from app.lifecycle import sql as sql
from app.lifecycle import transitions
from app.reads.user_batches import user_batches
from app.reads.users import UserFilter, check_filter, conditions
from app.store.engine import Database
from app.store.models import SyncUser
from app.store.unit_of_work import write

log = logging.getLogger("syncstatus.bulk")
TARGET_SECONDS = 0.025  # per write transaction: the longest stay under ~100 ms on a busy machine
READ_BATCH = 5000
FIRST_CHUNK, MIN_CHUNK, MAX_CHUNK = 200, 20, 5000


@dataclass(slots=True)
class BulkResult:
    requested: int = 0
    skipped: int = 0
    transactions: int = 0
    longest_seconds: float = 0.0  # the longest write transaction's own time


def _request_chunk(
    conn: Connection, tenant_id: int, filt: UserFilter, ids: list[int], now: int
) -> tuple[tuple[int, int, float], list[Event]]:
    began = time.perf_counter()
    dialect = conn.dialect.name
    # Every filter column as `col + 0`: the rows are found by id, never through another index.
    still = conditions(tenant_id, dialect, filt, indexed=frozenset(), search="like")
    if dialect == "postgresql":  # the users' row locks first, in id order, as every writer
        ids = list(
            conn.execute(
                select(SyncUser.id)
                .where(SyncUser.id.in_(ids), *still)
                .order_by(SyncUser.id)
                .with_for_update()
            ).scalars()
        )
        rows = conn.execute(sql.USERS_STATE, {"user_ids": ids}) if ids else []
    else:
        rows = conn.execute(sql.USERS_STATE.where(*still), {"user_ids": ids})
    users = [sql.user_state(row) for row in rows]
    events, skipped = transitions.request_syncs(conn, users, now)
    return (len(events), skipped, time.perf_counter() - began), events


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
    chunk = FIRST_CHUNK
    ids_only = (SyncUser.__table__.c.id,)
    async for rows in user_batches(db, tenant_id, filt, "EMAIL_ASC", READ_BATCH, ids_only):
        ids = sorted(row.id for row in rows)  # rows near each other on disk, locks in order
        while ids:
            part, ids = ids[:chunk], ids[chunk:]

            def change(conn: Connection, now: int, part: list[int] = part) -> Any:
                return _request_chunk(conn, tenant_id, filt, part, now)

            requested, skipped, seconds = await write(db, publisher, change)
            result.requested += requested
            result.skipped += skipped
            result.transactions += 1
            result.longest_seconds = max(result.longest_seconds, seconds)
            # Aim the next chunk at TARGET_SECONDS, growing at most twofold at a time.
            scaled = int(len(part) * TARGET_SECONDS / max(seconds, 1e-4))
            chunk = max(MIN_CHUNK, min(MAX_CHUNK, 2 * chunk, scaled))
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
        "transactions=%d longest=%.1fms%s",
        tenant_id,
        actor,
        describe(filt),
        result.requested,
        result.skipped,
        result.transactions,
        result.longest_seconds * 1000,
        "" if complete else " (cut short)",
    )
