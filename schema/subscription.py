"""The Subscription type."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
    ) -> AsyncIterator[SyncUser]:
        # Awaited first, so bad arguments fail the subscribe itself (a GraphQL error).
        return await streams.user_updates(info.context, user_ids, SyncUser.of)

    @strawberry.subscription(
        description="The metrics at once, then whenever they change, at most about once a second."
    )
    async def sync_metrics_updated(self, info: Info) -> AsyncIterator[SyncMetrics]:
        return await streams.metrics_updates(info.context, SyncMetrics.of)
