"""The Subscription type. The transport (subscriptions/transport.py) serves every valid
subscription without running these resolvers; they run for the requests it leaves to
Strawberry's pipeline, above all bad ones, whose errors their checks give."""

from __future__ import annotations

from collections.abc import AsyncIterator

import strawberry

from schema.types import Info, SyncMetrics, SyncUser
from subscriptions import live, streams


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every change of a user's sync state in the caller's tenant; with userIds "
        "(at most 100) only those users. Progress may be coalesced (about 4 a second per "
        "user); a run's start and finish always arrive, in order of version."
    )
    async def sync_user_updated(
        self, info: Info, user_ids: list[strawberry.ID] | None = None
    ) -> AsyncIterator[SyncUser]:
        # Checked first, so bad arguments fail the subscribe itself (a GraphQL error).
        tenant_id = await streams.check_tenant(info.context)
        stream = live.Stream(live.USER_FIELD, tenant_id, streams.parse_user_ids(user_ids))
        return live.updates(streams.hub_of(info.context), stream)

    @strawberry.subscription(
        description="The metrics at once, then whenever they change, at most about once a second."
    )
    async def sync_metrics_updated(self, info: Info) -> AsyncIterator[SyncMetrics]:
        tenant_id = await streams.check_tenant(info.context)
        stream = live.Stream(live.METRICS_FIELD, tenant_id, None)
        return live.updates(streams.hub_of(info.context), stream)
