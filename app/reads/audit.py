"""The audit log, newest first, filtered by action and time, with an exact count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.reads.pagination import Keyset, Page, PageArgs, keyset_page
from app.store.models import AuditEvent

AUDIT_EVENTS = Keyset("a", (AuditEvent.at, AuditEvent.id), True, (int, int))


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None
    since: int | None = None  # inclusive, micros
    until: int | None = None  # inclusive, micros


@dataclass(frozen=True, slots=True)
class AuditEventView:
    id: int
    at: int
    actor: str
    actor_role: str | None
    action: str
    target_id: str | None
    summary: str

    @classmethod
    def of(cls, row: Any) -> AuditEventView:
        return cls(
            row.id, row.at, row.actor, row.actor_role, row.action, row.target_id, row.summary
        )


def _where(tenant_id: int, filt: AuditFilter) -> list[Any]:
    conditions: list[Any] = [AuditEvent.tenant_id == tenant_id]
    if filt.action is not None:
        conditions.append(AuditEvent.action == filt.action)
    if filt.since is not None:
        conditions.append(AuditEvent.at >= filt.since)
    if filt.until is not None:
        conditions.append(AuditEvent.at <= filt.until)
    return conditions


async def audit_page(
    session: AsyncSession, tenant_id: int, filt: AuditFilter, args: PageArgs
) -> tuple[Page[AuditEventView], int]:
    where = _where(tenant_id, filt)
    query = select(*AuditEvent.__table__.c).where(*where)
    page = await keyset_page(
        session, query, AUDIT_EVENTS, tenant_id, args, lambda row: (row.at, row.id), core=True
    )
    total = await session.scalar(select(func.count()).select_from(AuditEvent).where(*where))
    items = [(cursor, AuditEventView.of(row)) for cursor, row in page.items]
    return Page(items, page.has_next, page.has_previous), int(total or 0)


async def audit_event_by_id(
    session: AsyncSession, tenant_id: int, event_id: int
) -> AuditEventView | None:
    row = (
        await session.execute(
            select(*AuditEvent.__table__.c).where(
                AuditEvent.id == event_id, AuditEvent.tenant_id == tenant_id
            )
        )
    ).first()
    return AuditEventView.of(row) if row is not None else None
