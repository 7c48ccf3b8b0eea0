"""The Subscription type."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from schema.types import Info, SyncMetrics, SyncUser
from subscriptions import streams


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every change of a user's sync state in the caller's tenant; with userIds "
        "(at most 100) only those users. Progress may be coalesced (about 4 a second per "
        "user); a run's start and finish always arrive, in order of version."
    )
    async def sync_user_updated(
        self, info: Info, user_ids: list[strawberry.ID] | None = None
    ) -> AsyncGenerator[SyncUser, None]:
        async for view in streams.user_updates(info.context, user_ids):
            yield SyncUser.of(view)

    @strawberry.subscription(
        description="The metrics at once, then whenever they change, at most about once a second."
    )
    async def sync_metrics_updated(self, info: Info) -> AsyncGenerator[SyncMetrics, None]:
        async for metrics in streams.metrics_updates(info.context):
            yield SyncMetrics.of(metrics)
