"""The checks of a subscription request, which the Strawberry resolvers (schema/subscription.py)
and the live transport's plan() (subscriptions/live.py) both run, so a bad request fails with
the same error whichever way it came: as a GraphQL error before the subscription starts (an
`error` message on graphql-transport-ws), and over plain HTTP with a clear error, not a null.
The streaming itself is subscriptions/live.py's, for both.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.errors import BadUserInput, ServiceError
from app.domain.ids import decode_id
from app.web.context import Context
from subscriptions.hub import Hub
from subscriptions.subscriber import UserIds

MAX_USER_IDS = 100


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


def hub_of(ctx: Context) -> Hub:
    hub = ctx.services.hub
    if not isinstance(hub, Hub):
        raise RuntimeError("the subscription hub is not running")
    return hub


def parse_user_ids(user_ids: Sequence[str] | None) -> UserIds | None:
    """Distinct, ascending: the hub registers a subscriber once under each. A tuple, since it
    is only walked (joining and leaving the hub), never searched, and every open dashboard
    keeps one: 10 ids are 120 bytes where a frozenset of them is 728."""
    if user_ids is None:
        return None
    if len(user_ids) > MAX_USER_IDS:
        raise BadUserInput(f"At most {MAX_USER_IDS} userIds per subscription.")
    return tuple(sorted({decode_id(i, "SyncUser") for i in user_ids}))
