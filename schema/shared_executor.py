"""graphql-core's executor for this schema, without its per-event memory growth in
subscriptions."""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        # graphql-core 3.3.2 copies the subscription's executor shallowly for each event,
        # so every event's subfield memo (keyed by lists made for that event, never hit
        # again) went into the subscription's own dict: it grew by ~1-2 KB with every event
        # delivered, for as long as the subscription lived. Each event gets its own memo.
        executor._relevant_sub_fields = {}
        return executor
