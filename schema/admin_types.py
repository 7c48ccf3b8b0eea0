"""Types of the audit log and webhooks."""

from __future__ import annotations

from enum import Enum

import strawberry

from app.domain.ids import encode_id
from app.domain.timeutil import from_micros
from app.reads.audit import AuditEventView
from app.reads.pagination import PageArgs
from app.webhooks import registry
from resolvers import admin_queries
from schema.enums import Role
from schema.scalars import DateTime
from schema.types import Info, Node, PageInfo, connection_of


def _time(micros: int | None) -> DateTime | None:
    return from_micros(micros) if micros is not None else None


@strawberry.type(description="One administrative or operator action: who, what, when, on what.")
class AuditEvent(Node):
    at: DateTime
    actor: str = strawberry.field(description='The acting token\'s name; "cli" for the CLI.')
    actor_role: Role | None = strawberry.field(description="Null for the command line.")
    action: str = strawberry.field(description="e.g. policy.create, webhook.delete.")
    target_id: strawberry.ID | None = strawberry.field(description="The global id acted on.")
    summary: str = strawberry.field(description="One line a person reads: what changed.")

    @classmethod
    def of(cls, view: AuditEventView) -> AuditEvent:
        return cls(
            id=strawberry.ID(encode_id("AuditEvent", view.id)),
            at=from_micros(view.at),
            actor=view.actor,
            actor_role=Role(view.actor_role) if view.actor_role else None,
            action=view.action,
            target_id=strawberry.ID(view.target_id) if view.target_id else None,
            summary=view.summary,
        )


@strawberry.type
class AuditEventEdge:
    cursor: str
    node: AuditEvent


@strawberry.type
class AuditEventConnection:
    edges: list[AuditEventEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Exact.")


@strawberry.input(description="Filters of the audit log; all given filters apply together.")
class AuditEventFilter:
    action: str | None = None
    since: DateTime | None = strawberry.field(default=None, description="Inclusive.")
    until: DateTime | None = strawberry.field(default=None, description="Inclusive.")


@strawberry.enum(description="What a webhook is told about.")
class WebhookEvent(Enum):
    RUN_FAILED = "RUN_FAILED"
    RUN_COMPLETED_WITH_WARNING = "RUN_COMPLETED_WITH_WARNING"
    USER_RECOVERED = "USER_RECOVERED"


@strawberry.type(description="One event sent (or to be sent) to one webhook.")
class WebhookDelivery(Node):
    event: WebhookEvent
    created_at: DateTime
    attempts: int
    last_status_code: int | None = strawberry.field(
        description="HTTP status of the last attempt; null when it never got one."
    )
    delivered_at: DateTime | None
    next_attempt_at: DateTime | None = strawberry.field(
        description="Null once delivered or given up."
    )

    @classmethod
    def of(cls, view: registry.DeliveryView) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(encode_id("WebhookDelivery", view.id)),
            event=WebhookEvent(view.event),
            created_at=from_micros(view.created_at),
            attempts=view.attempts,
            last_status_code=view.last_status_code,
            delivered_at=_time(view.delivered_at),
            next_attempt_at=_time(view.next_attempt_at),
        )


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Exact.")


@strawberry.type(description="A receiver of signed event deliveries (Standard Webhooks).")
class Webhook(Node):
    url: str
    events: list[WebhookEvent]
    active: bool
    created_at: DateTime
    row_id: strawberry.Private[int]

    @classmethod
    def of(cls, view: registry.WebhookView) -> Webhook:
        return cls(
            id=strawberry.ID(encode_id("Webhook", view.id)),
            url=view.url,
            events=[WebhookEvent(e) for e in view.events],
            active=view.active,
            created_at=from_micros(view.created_at),
            row_id=view.id,
        )

    @strawberry.field(description="Newest first.")
    async def deliveries(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> WebhookDeliveryConnection:
        page, total = await admin_queries.deliveries(
            info.context, self.row_id, PageArgs(first=first, after=after)
        )
        return connection_of(
            WebhookDeliveryConnection, WebhookDeliveryEdge, WebhookDelivery.of, page, total
        )


@strawberry.type
class WebhookEdge:
    cursor: str
    node: Webhook


@strawberry.type
class WebhookConnection:
    edges: list[WebhookEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Exact.")


@strawberry.type(description="A new webhook and its signing secret, shown once.")
class CreatedWebhook:
    webhook: Webhook
    secret: str = strawberry.field(description='"whsec_" + base64; shown only here.')


def admin_node(
    view: AuditEventView | registry.WebhookView | registry.DeliveryView | None,
) -> Node | None:
    if isinstance(view, AuditEventView):
        return AuditEvent.of(view)
    if isinstance(view, registry.WebhookView):
        return Webhook.of(view)
    if isinstance(view, registry.DeliveryView):
        return WebhookDelivery.of(view)
    return None
