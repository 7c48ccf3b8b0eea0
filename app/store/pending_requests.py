"""Pending bulk requests (sync_requests): how readers see them and how writers fold them.

requestSyncs records each user it requests as a narrow sync_requests row instead of updating
the user's row. A user with such a row reads exactly as if the update had been made:
sync_requested true, version + bumps (due_at is the request time, which only claims use:
reads show a requested user as due now). Every writer of a user's row folds the pending
request into it first (fold), under the user's row lock on PostgreSQL, so nothing downstream
sees the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Table,
    bindparam,
    case,
    delete,
    func,
    select,
    true,
    type_coerce,
    update,
)

from app.store.models import SyncRequest, SyncUser

requests = cast(Table, SyncRequest.__table__)
users = cast(Table, SyncUser.__table__)


def _bumps(user: Any) -> Any:
    return select(requests.c.bumps).where(requests.c.user_id == user.c.id).scalar_subquery()


def sync_requested(user: Table | Any = users) -> ColumnElement[bool]:
    """The user's sync_requested as readers see it (a correlated lookup by primary key)."""
    pending = case((_bumps(user).is_not(None), true()), else_=user.c.sync_requested)
    return type_coerce(pending, Boolean()).label("sync_requested")


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
    reading users to change them (on PostgreSQL after locking them: requestSyncs locks the
    users it requests). Returns how many were pending."""
    if not user_ids:
        return 0
    taken = conn.execute(_TAKE, {"tenant_id": tenant_id, "user_ids": list(user_ids)}).all()
    if taken:
        conn.execute(
            _FOLD,
            [{"uid": uid, "requested_at": at, "bumps": bumps} for uid, at, bumps in taken],
        )
    return len(taken)
