"""The outbox side of webhooks: the run's finish writes one delivery per subscribed webhook in
its own transaction (one INSERT ... SELECT per event), so a committed finish is never lost."""

from __future__ import annotations

import json
from typing import cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    true,
)

from app.domain.ids import encode_id
from app.domain.statuses import COMPLETED, RunState
from app.domain.timeutil import from_micros
from app.domain.views import RunView, UserView
from app.store.models import Webhook, WebhookDelivery

EVENTS = ("RUN_FAILED", "RUN_COMPLETED_WITH_WARNING", "USER_RECOVERED")
BODY_TYPES = {
    "RUN_FAILED": "run.failed",
    "RUN_COMPLETED_WITH_WARNING": "run.completed_with_warning",
    "USER_RECOVERED": "user.recovered",
}

webhooks = cast(Table, Webhook.__table__)
deliveries = cast(Table, WebhookDelivery.__table__)

ENQUEUE = insert(deliveries).from_select(
    ["tenant_id", "webhook_id", "event", "payload", "created_at", "attempts", "next_attempt_at"],
    select(
        webhooks.c.tenant_id,
        webhooks.c.id,
        bindparam("event", type_=String),
        bindparam("payload", type_=Text),
        bindparam("now", type_=BigInteger),
        bindparam("zero", type_=Integer),
        bindparam("now", type_=BigInteger),
    ).where(
        webhooks.c.tenant_id == bindparam("tenant_id"),
        webhooks.c.active == true(),
        webhooks.c.events.like(bindparam("pattern", type_=String)),
    ),
)


def events_of(state: str, previously_failed: bool) -> list[str]:
    """The webhook events a run's finish raises."""
    raised = []
    if state == RunState.FAILED:
        raised.append("RUN_FAILED")
    elif state == RunState.COMPLETED_WITH_WARNING:
        raised.append("RUN_COMPLETED_WITH_WARNING")
    if previously_failed and state in COMPLETED:
        raised.append("USER_RECOVERED")
    return raised


def body(event: str, user: UserView, run: RunView, at: int) -> str:
    """The delivery's JSON body, as signed and sent (Standard Webhooks' type/timestamp/data)."""
    return json.dumps(
        {
            "type": BODY_TYPES[event],
            "timestamp": from_micros(at).isoformat().replace("+00:00", "Z"),
            "data": {
                "user": {
                    "id": encode_id("SyncUser", user.id),
                    "email": user.email,
                    "status": user.status,
                },
                "run": {
                    "id": encode_id("SyncRun", run.id),
                    "state": run.state,
                    "errorCode": run.error_code,
                    "errorMessage": run.error_message,
                    "itemsFailed": run.items_failed,
                },
            },
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def enqueue(
    conn: Connection, user: UserView, run: RunView, now: int, previously_failed: bool
) -> None:
    """Deliveries for the finished run to every active webhook of the tenant subscribed."""
    for event in events_of(run.state, previously_failed):
        conn.execute(
            ENQUEUE,
            {
                "tenant_id": run.tenant_id,
                "event": event,
                "payload": body(event, user, run, now),
                "now": now,
                "zero": 0,
                "pattern": f"%,{event},%",
            },
        )
