"""Failure triage: the causes of failures, activity trends, and "retry all"."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from app.admin import audit
from app.domain.roles import Role
from app.domain.timeutil import now_micros, to_micros
from app.events.messages import Event
from app.lifecycle import bulk_requests
from app.reads import failure_reasons as reasons
from app.reads import trends
from app.reads.failure_reasons import FailureReasonView
from app.reads.trends import TrendPointView
from app.reads.users import UserFilter
from app.store.unit_of_work import write
from app.web.context import Context
from resolvers.queries import viewer


async def failure_reasons(ctx: Context, first: int) -> list[FailureReasonView]:
    tenant_id = await viewer(ctx)
    async with ctx.read() as session:
        return await reasons.failure_reasons(session, tenant_id, first)


async def sync_trends(
    ctx: Context, since: datetime, until: datetime | None, bucket: str
) -> list[TrendPointView]:
    tenant_id = await viewer(ctx)
    end = to_micros(until) if until is not None else now_micros()
    trends.window(to_micros(since), end, bucket)  # bad windows fail before any read
    async with ctx.read() as session:
        return await trends.sync_trends(session, tenant_id, to_micros(since), end, bucket)


async def request_syncs(ctx: Context, filt: UserFilter) -> bulk_requests.BulkResult:
    principal = await ctx.principal()
    principal.require(Role.OPERATOR)
    services = ctx.services
    bulk_requests.check_filter(filt)  # a bad filter is refused, not recorded
    result = bulk_requests.BulkResult()
    complete = False
    try:
        await bulk_requests.request_syncs(
            services.db, services.publisher, principal.tenant_id, filt, result
        )
        complete = True
    finally:
        bulk_requests.record(
            principal.tenant_id, principal.token_name, filt, result, complete=complete
        )
        line = bulk_requests.summary(filt, result, complete)
        actor = audit.Actor.of(principal)

        def audited(conn: Connection, now: int) -> tuple[None, list[Event]]:
            audit.record(conn, principal.tenant_id, actor, "sync.request_bulk", None, line, now)
            return None, []

        await write(services.db, services.publisher, audited)
    return result
