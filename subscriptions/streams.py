"""Subscription streams: live updates for the caller's tenant.

Opening a stream checks the caller and the arguments first and only then returns the live
iterator, so a bad request fails as a GraphQL error before the subscription starts (an `error`
message on graphql-transport-ws), and a subscription sent over plain HTTP gets a clear error
instead of a null.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from app.domain.errors import BadUserInput, ServiceError
from app.domain.ids import decode_id
from app.domain.views import MetricsView, UserView
from app.web.context import Context
from subscriptions.hub import Hub
from subscriptions.subscriber import SubscriberOverflow

MAX_USER_IDS = 100
T = TypeVar("T")


class TooSlow(ServiceError):
    code = "CONFLICT"


async def check_tenant(ctx: Context) -> int:
    if not ctx.websocket:
        raise BadUserInput(
            "Subscriptions are served over WebSocket (graphql-transport-ws) at /graphql."
        )
    principal = await ctx.principal()
    principal.require("VIEWER")
    return principal.tenant_id


def _hub(ctx: Context) -> Hub:
    hub = ctx.services.hub
    if not isinstance(hub, Hub):
        raise RuntimeError("the subscription hub is not running")
    return hub


def parse_user_ids(user_ids: Sequence[str] | None) -> frozenset[int] | None:
    if user_ids is None:
        return None
    if len(user_ids) > MAX_USER_IDS:
        raise BadUserInput(f"At most {MAX_USER_IDS} userIds per subscription.")
    return frozenset(decode_id(i, "SyncUser") for i in user_ids)


async def user_updates(
    ctx: Context, user_ids: Sequence[str] | None, convert: Callable[[UserView], T]
) -> AsyncIterator[T]:
    """Checks the request, then returns the stream of the watched users' new states."""
    tenant_id = await check_tenant(ctx)
    ids = parse_user_ids(user_ids)
    return _user_stream(_hub(ctx), tenant_id, ids, convert)


async def _user_stream(
    hub: Hub, tenant_id: int, ids: frozenset[int] | None, convert: Callable[[UserView], T]
) -> AsyncIterator[T]:
    async with hub.users(tenant_id, ids) as subscriber:
        while True:
            try:
                batch = await subscriber.next_batch()
            except SubscriberOverflow:
                raise TooSlow(
                    "The subscriber fell too far behind; refetch and resubscribe."
                ) from None
            for event in batch:
                # The same object for every subscriber of the event: executed once for all.
                yield hub.shared.payload(event.user, convert)


async def metrics_updates(ctx: Context, convert: Callable[[MetricsView], T]) -> AsyncIterator[T]:
    """Checks the caller, then returns the metrics at once and then on change."""
    tenant_id = await check_tenant(ctx)
    return _metrics_stream(_hub(ctx), tenant_id, convert)


async def _metrics_stream(
    hub: Hub, tenant_id: int, convert: Callable[[MetricsView], T]
) -> AsyncIterator[T]:
    async with hub.metrics(tenant_id) as subscriber:
        while True:
            yield hub.shared.payload(await subscriber.next(), convert)
