"""All the users a filter selects, in order, in keyset batches (each its own short read):
bounded memory at any size, for the CSV export and bulk sync requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Row, Select, and_, select, tuple_

from app.reads.users import COLUMNS, ORDERS, Access, UserFilter, conditions, plan_access
from app.store.engine import Database
from app.store.models import SyncUser

KEY_OF = {
    "EMAIL_ASC": lambda row: (row.email, row.id),
    "LATEST_SYNC_DESC": lambda row: (row.latest_sort, row.id),
}


def batch_query(
    tenant_id: int,
    dialect: str,
    filt: UserFilter,
    order: str,
    access: Access | None,
    after: tuple[Any, ...] | None,
    limit: int,
    columns: tuple[Any, ...] = COLUMNS,
) -> Select[Any]:
    keyset = ORDERS[order]
    if access is None:
        where = conditions(tenant_id, dialect, filt)
    else:
        where = conditions(tenant_id, dialect, filt, access.indexed, access.search, access.ids)
    query: Select[Any] = select(*columns).where(and_(*where))
    if access is not None:
        query = access.select(query)
    if after is not None:
        key, bound = tuple_(*keyset.columns), tuple_(*after)
        query = query.where(key < bound if keyset.descending else key > bound)
    by = [c.desc() if keyset.descending else c.asc() for c in keyset.columns]
    return query.order_by(*by).limit(limit)


async def user_batches(
    db: Database,
    tenant_id: int,
    filt: UserFilter,
    order: str,
    size: int,
    columns: tuple[Any, ...] = COLUMNS,
) -> AsyncIterator[list[Row[Any]]]:
    """Batches of at most `size` rows (with at least the key columns) until none is left."""
    table = SyncUser.__table__.c
    keys = [table.email, table.latest_sort, table.id]
    wanted = (*columns, *(c for c in keys if not any(c is k for k in columns)))
    async with db.read() as session:
        access = await plan_access(session, tenant_id, filt, order, size)
    after: tuple[Any, ...] | None = None
    while True:
        query = batch_query(tenant_id, db.dialect, filt, order, access, after, size, wanted)
        async with db.read() as session:
            rows = list((await (await session.connection()).execute(query)).all())
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        after = KEY_OF[order](rows[-1])
