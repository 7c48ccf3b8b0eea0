"""Subscription streams: snapshot-free live updates for the caller's tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from app.context import Context
from app.errors import BadUserInput, ServiceError
from app.ids import decode_id
from app.views import MetricsView, UserView
from subscriptions.hub import Hub
from subscriptions.subscriber import SubscriberOverflow

MAX_USER_IDS = 100


class TooSlow(ServiceError):
    code = "CONFLICT"


async def _tenant(ctx: Context) -> int:
    principal = await ctx.principal()
    principal.require("VIEWER")
    return principal.tenant_id


def _hub(ctx: Context) -> Hub:
    hub = ctx.services.hub
    assert isinstance(hub, Hub)
    return hub


async def user_updates(ctx: Context, user_ids: Sequence[str] | None) -> AsyncIterator[UserView]:
    tenant_id = await _tenant(ctx)
    ids: frozenset[int] | None = None
    if user_ids is not None:
        if len(user_ids) > MAX_USER_IDS:
            raise BadUserInput(f"At most {MAX_USER_IDS} userIds per subscription.")
        ids = frozenset(decode_id(i, "SyncUser") for i in user_ids)
    async with _hub(ctx).users(tenant_id, ids) as subscriber:
        while True:
            try:
                batch = await subscriber.next_batch()
            except SubscriberOverflow:
                raise TooSlow(
                    "The subscriber fell too far behind; refetch and resubscribe."
                ) from None
            for event in batch:
                yield event.user


async def metrics_updates(ctx: Context) -> AsyncIterator[MetricsView]:
    tenant_id = await _tenant(ctx)
    async with _hub(ctx).metrics(tenant_id) as subscriber:
        while True:
            yield await subscriber.next()
