"""Pending bulk requests (sync_requests): how readers see them and how writers fold them.

requestSyncs records each user it requests as a narrow sync_requests row instead of updating
the user's row. A user with such a row reads exactly as if the update had been made:
sync_requested true, version + bumps (due_at is the request time, which only claims use:
reads show a requested user as due now). Every writer of a user's row folds the pending
request into it first (fold), under the user's row lock on PostgreSQL, so nothing downstream
sees the difference.

On PostgreSQL requestSyncs takes no lock on the users (a row lock writes into each user's
heap tuple: it doubled the request's WAL), so the user's row lock alone does not keep a
request out. The user's sync_requests key does: fold first inserts a placeholder for each user
(bumps 0, never committed), which waits for a request of the user in flight and makes a request
arriving meanwhile wait for this transaction. A request is thus either before the writer's
change (folded into it: the change's version counts it) or after it (its own version on top).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    Table,
    bindparam,
    case,
    delete,
    func,
    literal,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql

from app.store.models import SyncRequest, SyncUser

requests = cast(Table, SyncRequest.__table__)
users = cast(Table, SyncUser.__table__)
PLACEHOLDER_AT = 2**62  # fold's placeholders (PostgreSQL), see _WAIT


def _bumps(user: Any) -> Any:
    return select(requests.c.bumps).where(requests.c.user_id == user.c.id).scalar_subquery()


def sync_requested(user: Table | Any = users) -> ColumnElement[bool]:
    """The user's sync_requested as readers see it (a correlated lookup by primary key)."""
    pending = case((_bumps(user).is_not(None), true()), else_=user.c.sync_requested)
    return type_coerce(pending, Boolean()).label("sync_requested")


def pending(user: Table | Any = users) -> ColumnElement[bool]:
    """Whether the user has a request pending (a lookup by primary key)."""
    return type_coerce(_bumps(user).is_not(None), Boolean()).label("request_pending")


def version(user: Table | Any = users) -> ColumnElement[int]:
    """The user's own version as readers see it: one more per pending request."""
    return (user.c.version + func.coalesce(_bumps(user), 0)).label("version")


def overlaid(columns: Sequence[Any]) -> tuple[Any, ...]:
    """sync_users' columns with sync_requested and version as readers see them."""
    swap = {"sync_requested": sync_requested(), "version": version()}
    return tuple(swap.get(c.key, c) if c.table is users else c for c in columns)


def pending_between(tenant_id: int, since: int, until: int) -> Any:
    """The ids of the tenant's users with a request pending from [since, until]."""
    return select(requests.c.user_id).where(
        requests.c.tenant_id == tenant_id, requests.c.requested_at.between(since, until)
    )


def pending_of(tenant_id: int) -> Any:
    return select(requests.c.user_id).where(requests.c.tenant_id == tenant_id)


_TAKE = (
    delete(requests)
    .where(
        requests.c.tenant_id == bindparam("tenant_id"),
        requests.c.user_id.in_(bindparam("user_ids", expanding=True)),
    )
    .returning(requests.c.user_id, requests.c.requested_at, requests.c.bumps)
)
# PostgreSQL: a placeholder per user, in id order (as requestSyncs inserts: no deadlock). ON
# CONFLICT waits for a request inserted by a transaction in flight; a committed one stays (the
# DELETE below takes it). The DELETE drops the placeholders again before commit. Requested "at"
# the far future: their dead index entries sit at the end of ix_sync_requests_due, not at its
# start, where claims begin reading.
_WAIT = (
    postgresql.insert(requests)
    .from_select(
        ["user_id", "tenant_id", "requested_at", "bumps"],
        select(
            func.unnest(bindparam("user_ids", type_=postgresql.ARRAY(BigInteger))).label("id"),
            bindparam("tenant_id"),
            literal(PLACEHOLDER_AT, BigInteger),
            literal(0),
        ).order_by("id"),
    )
    .on_conflict_do_nothing(index_elements=[requests.c.user_id])
)
_FOLD = (
    update(users)
    .where(users.c.id == bindparam("uid"))
    .values(
        sync_requested=True,
        due_at=bindparam("requested_at"),
        version=users.c.version + bindparam("bumps"),
    )
)


def fold(conn: Connection, tenant_id: int, user_ids: Sequence[int]) -> int:
    """Writes the users' pending requests into their rows, as requestSyncs once did itself
    (sync_requested, due_at = request time, version + bumps), and drops them. Call it before
    reading users to change them (on PostgreSQL after locking them, and in the same
    transaction: until it ends no request of these users commits). Returns how many were
    pending."""
    if not user_ids:
        return 0
    params = {"tenant_id": tenant_id, "user_ids": list(user_ids)}
    if conn.dialect.name == "postgresql":
        conn.execute(_WAIT, params)
    taken = [row for row in conn.execute(_TAKE, params) if row.bumps]  # not placeholders
    if taken:
        conn.execute(
            _FOLD,
            [{"uid": uid, "requested_at": at, "bumps": bumps} for uid, at, bumps in taken],
        )
    return len(taken)
