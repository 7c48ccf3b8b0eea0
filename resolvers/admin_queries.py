"""Query resolvers of the audit log and webhooks (ADMIN)."""

from __future__ import annotations

from datetime import datetime

from app.admin.audit import ACTIONS
from app.domain.errors import BadUserInput
from app.domain.roles import Role
from app.domain.timeutil import to_micros
from app.reads import audit
from app.reads.pagination import Page, PageArgs
from app.web.context import Context
from app.webhooks import registry


async def _admin(ctx: Context) -> int:
    principal = await ctx.principal()
    principal.require(Role.ADMIN)
    return principal.tenant_id


def audit_filter(
    action: str | None, since: datetime | None, until: datetime | None
) -> audit.AuditFilter:
    if action is not None and action not in ACTIONS:
        raise BadUserInput(f"Unknown action {action!r}; one of: {', '.join(ACTIONS)}.")
    return audit.AuditFilter(
        action=action,
        since=to_micros(since) if since is not None else None,
        until=to_micros(until) if until is not None else None,
    )


async def audit_events(
    ctx: Context, filt: audit.AuditFilter, args: PageArgs
) -> tuple[Page[audit.AuditEventView], int]:
    tenant_id = await _admin(ctx)
    async with ctx.read() as session:
        return await audit.audit_page(session, tenant_id, filt, args)


async def webhook_list(ctx: Context, args: PageArgs) -> tuple[Page[registry.WebhookView], int]:
    tenant_id = await _admin(ctx)
    async with ctx.read() as session:
        return await registry.webhook_page(session, tenant_id, args)


async def deliveries(
    ctx: Context, webhook_id: int, args: PageArgs
) -> tuple[Page[registry.DeliveryView], int]:
    tenant_id = await _admin(ctx)
    async with ctx.read() as session:
        return await registry.delivery_page(session, tenant_id, webhook_id, args)


async def admin_node(
    ctx: Context, type_name: str, row_id: int
) -> audit.AuditEventView | registry.WebhookView | registry.DeliveryView | None:
    """node(id) for the audit log and webhooks: ADMIN only (others get null, as for any id
    they may not see)."""
    principal = await ctx.principal()
    if principal.role != Role.ADMIN:
        return None
    async with ctx.read() as session:
        if type_name == "AuditEvent":
            return await audit.audit_event_by_id(session, principal.tenant_id, row_id)
        if type_name == "Webhook":
            return await registry.webhook_by_id(session, principal.tenant_id, row_id)
        if type_name == "WebhookDelivery":
            return await registry.delivery_by_id(session, principal.tenant_id, row_id)
    return None
