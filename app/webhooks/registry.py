"""Webhook administration: create (with its signing secret, shown once) and delete, and the
read side: webhooks and their deliveries, newest first."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.errors import BadUserInput, Conflict, NotFound
from app.reads.pagination import Keyset, Page, PageArgs, keyset_page
from app.store.models import Webhook, WebhookDelivery
from app.webhooks.outbox import EVENTS
from app.webhooks.secret_box import SecretBox

MAX_WEBHOOKS_PER_TENANT = 20
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
WEBHOOKS = Keyset("w", (Webhook.id,), True, (int,))
DELIVERIES = Keyset("d", (WebhookDelivery.id,), True, (int,))


@dataclass(frozen=True, slots=True)
class WebhookView:
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: int

    @classmethod
    def of(cls, row: Webhook) -> WebhookView:
        return cls(row.id, row.url, _events(row.events), row.active, row.created_at)


@dataclass(frozen=True, slots=True)
class DeliveryView:
    id: int
    event: str
    created_at: int
    attempts: int
    last_status_code: int | None
    delivered_at: int | None
    next_attempt_at: int | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryView:
        return cls(
            row.id,
            row.event,
            row.created_at,
            row.attempts,
            row.last_status_code,
            row.delivered_at,
            row.next_attempt_at,
        )


def _events(stored: str) -> list[str]:
    return [e for e in stored.split(",") if e]


def clean_events(events: Sequence[str]) -> list[str]:
    if not events:
        raise BadUserInput("events must name at least one WebhookEvent.")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise BadUserInput(f"Unknown webhook events: {', '.join(unknown)}.")
    return [e for e in EVENTS if e in events]  # one order, no repeats


def sealing_context(tenant_id: int) -> bytes:
    return f"webhook-secret:{tenant_id}".encode()


async def create_webhook(
    session: AsyncSession,
    tenant_id: int,
    now: int,
    url: str,
    events: Sequence[str],
    box: SecretBox,
) -> tuple[Webhook, str]:
    """The new webhook and its secret ("whsec_" + base64). `url` was vetted by the caller
    (app.webhooks.urls), outside the transaction: resolving a name may take seconds."""
    wanted = clean_events(events)
    count = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.tenant_id == tenant_id)
    )
    if (count or 0) >= MAX_WEBHOOKS_PER_TENANT:
        raise Conflict(f"A tenant may have at most {MAX_WEBHOOKS_PER_TENANT} webhooks.")
    key = secrets.token_bytes(SECRET_BYTES)
    row = Webhook(
        tenant_id=tenant_id,
        url=url,
        events="," + ",".join(wanted) + ",",
        active=True,
        secret_sealed=box.seal(key, sealing_context(tenant_id)),
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row, SECRET_PREFIX + base64.b64encode(key).decode()


async def delete_webhook(session: AsyncSession, tenant_id: int, webhook_id: int) -> Webhook:
    """Deletes the webhook with its deliveries (pending ones are not sent)."""
    row = await session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.tenant_id == tenant_id)
    )
    if row is None:
        raise NotFound("No such webhook.")
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == row.id))
    await session.execute(delete(Webhook).where(Webhook.id == row.id))
    return row


async def webhook_page(
    session: AsyncSession, tenant_id: int, args: PageArgs
) -> tuple[Page[WebhookView], int]:
    query = select(Webhook).where(Webhook.tenant_id == tenant_id)
    page = await keyset_page(session, query, WEBHOOKS, tenant_id, args, lambda row: (row[0].id,))
    total = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.tenant_id == tenant_id)
    )
    items = [(cursor, WebhookView.of(row[0])) for cursor, row in page.items]
    return Page(items, page.has_next, page.has_previous), int(total or 0)


async def webhook_by_id(
    session: AsyncSession, tenant_id: int, webhook_id: int
) -> WebhookView | None:
    row = await session.scalar(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.tenant_id == tenant_id)
    )
    return WebhookView.of(row) if row is not None else None


async def delivery_page(
    session: AsyncSession, tenant_id: int, webhook_id: int, args: PageArgs
) -> tuple[Page[DeliveryView], int]:
    mine = (WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.webhook_id == webhook_id)
    page = await keyset_page(
        session,
        select(WebhookDelivery).where(*mine),
        DELIVERIES,
        tenant_id,
        args,
        lambda row: (row[0].id,),
    )
    total = await session.scalar(select(func.count()).select_from(WebhookDelivery).where(*mine))
    items = [(cursor, DeliveryView.of(row[0])) for cursor, row in page.items]
    return Page(items, page.has_next, page.has_previous), int(total or 0)


async def delivery_by_id(
    session: AsyncSession, tenant_id: int, delivery_id: int
) -> DeliveryView | None:
    row = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id == tenant_id
        )
    )
    return DeliveryView.of(row) if row is not None else None
