"""Query resolvers: check the caller, parse arguments, call the read side in app/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.admin.token_admin import TokenView, token_by_id, token_page
from app.domain import validation
from app.domain.ids import decode_any_id, decode_id
from app.domain.roles import Role
from app.domain.timeutil import now_micros, to_micros
from app.domain.views import FailedItemView, MetricsView, PolicyView, RunView, UserView
from app.reads import metrics, relations, runs, users
from app.reads.pagination import Page, PageArgs
from app.reads.users import UserFilter
from app.store.models import Tenant
from app.web.context import Context
from resolvers import admin_queries


async def viewer(ctx: Context) -> int:
    principal = await ctx.principal()
    principal.require(Role.VIEWER)
    return principal.tenant_id


async def sync_metrics(ctx: Context) -> MetricsView:
    tenant_id = await viewer(ctx)
    async with ctx.read() as session:
        return await metrics.sync_metrics(session, tenant_id, now_micros())


def user_filter(
    email_contains: str | None,
    latest_sync_from: datetime | None,
    latest_sync_to: datetime | None,
    policy_id: str | None,
    status: str | None,
    error_code: str | None = None,
) -> UserFilter:
    return UserFilter(
        email_contains=email_contains,
        latest_sync_from=to_micros(latest_sync_from) if latest_sync_from else None,
        latest_sync_to=to_micros(latest_sync_to) if latest_sync_to else None,
        policy_id=decode_id(policy_id, "Policy") if policy_id is not None else None,
        status=status,
        error_code=validation.error_code(error_code) if error_code is not None else None,
    )


async def sync_users(
    ctx: Context,
    filt: UserFilter,
    order: str,
    args: PageArgs,
    *,
    with_total: bool = False,
    runs: frozenset[str] = frozenset(),
    rows: bool = True,
) -> tuple[Page[UserView], int | None]:
    """A page with each user's policy and the asked runs, and the exact total when asked (or
    when planning the page needed it), all in one session. Without `rows` (totalCount alone:
    a client polling a count), the arguments are checked and only the total is read."""
    tenant_id = await viewer(ctx)
    if not rows:
        users.check_page(tenant_id, filt, order, args)
        total = await _user_count(ctx, tenant_id, filt) if with_total else None
        return Page([], False, False), total
    async with ctx.read() as session:
        result = await users.user_page(
            session,
            tenant_id,
            filt,
            order,
            args,
            search_counts=ctx.services.search_counts,
            search_matches=ctx.services.search_matches,
        )
        total = result.total
        if with_total and total is None:
            total = await users.user_count(session, tenant_id, filt, ctx.services.search_counts)
        page = await relations.with_relations(session, tenant_id, result.page, runs)
    return page, total


async def sync_user_count(ctx: Context, filt: UserFilter) -> int:
    return await _user_count(ctx, await viewer(ctx), filt)


async def _user_count(ctx: Context, tenant_id: int, filt: UserFilter) -> int:
    async with ctx.read() as session:
        return await users.user_count(session, tenant_id, filt, ctx.services.search_counts)


async def sync_user(ctx: Context, global_id: str) -> UserView | None:
    await viewer(ctx)
    return await ctx.loaders.user.load(decode_id(global_id, "SyncUser"))


async def sync_run(ctx: Context, global_id: str) -> RunView | None:
    await viewer(ctx)
    return await ctx.loaders.run.load(decode_id(global_id, "SyncRun"))


async def node(ctx: Context, global_id: str) -> UserView | RunView | PolicyView | TokenView | None:
    await viewer(ctx)
    type_name, row_id = decode_any_id(global_id)
    if type_name == "ApiTokenInfo":
        return await api_token(ctx, row_id)
    if type_name == "SyncUser":
        return await ctx.loaders.user.load(row_id)
    if type_name == "SyncRun":
        return await ctx.loaders.run.load(row_id)
    if type_name == "Policy":
        return await ctx.loaders.policy.load(row_id)
    if type_name in ("AuditEvent", "Webhook", "WebhookDelivery"):
        return await admin_queries.admin_node(ctx, type_name, row_id)  # type: ignore[return-value]
    return None


async def policies(ctx: Context, args: PageArgs) -> tuple[Page[PolicyView], int]:
    tenant_id = await viewer(ctx)
    async with ctx.read() as session:
        return await runs.policy_page(session, tenant_id, args)


async def user_runs(ctx: Context, user_id: int, args: PageArgs) -> tuple[Page[RunView], int]:
    """Batched: the runs of every user of a page are read in one go (app/web/context.py)."""
    await viewer(ctx)
    return await ctx.loaders.user_runs.load((user_id, args))


async def failed_items(
    ctx: Context, run_id: int, args: PageArgs
) -> tuple[Page[FailedItemView], int]:
    await viewer(ctx)
    return await ctx.loaders.run_failed_items.load((run_id, args))


@dataclass(frozen=True, slots=True)
class WhoAmI:
    tenant_name: str
    token_name: str
    role: str


async def who_am_i(ctx: Context) -> WhoAmI:
    """Any valid token may ask who it is."""
    principal = await ctx.principal()
    async with ctx.read() as session:
        tenant_name = await session.scalar(
            select(Tenant.name).where(Tenant.id == principal.tenant_id)
        )
    return WhoAmI(str(tenant_name), principal.token_name, principal.role)


async def api_tokens(ctx: Context, args: PageArgs) -> tuple[Page[TokenView], int]:
    principal = await ctx.principal()
    principal.require(Role.ADMIN)
    async with ctx.read() as session:
        return await token_page(session, principal.tenant_id, args)


async def api_token(ctx: Context, token_id: int) -> TokenView | None:
    """A token of the caller's tenant, for an ADMIN only (others: as if it did not exist)."""
    principal = await ctx.principal()
    if principal.role != Role.ADMIN:
        return None
    async with ctx.read() as session:
        return await token_by_id(session, principal.tenant_id, token_id)
