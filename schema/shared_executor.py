"""Subscription events executed once per payload and document, not once per subscriber,
and without graphql-core's per-event memory growth.

graphql-core executes a subscription's selection set for every event of every subscriber.
For a payload the hub shares between subscribers (subscriptions/shared.py), the first
subscriber's execution is reused by the others: same data, same errors. Everything else
(queries, mutations, payloads not shared) executes as usual.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphql import OperationType

from schema.library_internals import LeafFastExecutor, fresh_subfield_memo
from subscriptions.shared import SharedExecution


def _shared_execution(context: Any) -> SharedExecution | None:
    hub = getattr(getattr(context, "services", None), "hub", None)
    shared = getattr(hub, "shared", None)
    return shared if isinstance(shared, SharedExecution) else None


async def _await_shared(task: asyncio.Future[Any]) -> Any:
    # Shielded: one subscriber leaving must not cancel the execution the others wait for.
    return await asyncio.shield(task)


class SharedEventExecutor(LeafFastExecutor):
    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        # graphql-core 3.3.2 copies the subscription's executor shallowly for each event,
        # so every event's subfield memo (keyed by lists made for that event, never hit
        # again) went into the subscription's own dict: it grew by ~1-2 KB with every event
        # delivered, for as long as the subscription lived. Each event gets its own memo.
        fresh_subfield_memo(executor)
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        # Subscription events are executed with serially=False (execute_subscription_event).
        if serially is not False or self.operation.operation is not OperationType.SUBSCRIPTION:
            return super().execute_operation(serially)
        shared = _shared_execution(self.context_value)
        if shared is None:
            return super().execute_operation(serially)
        principal = getattr(self.context_value, "principal_", None)
        key = shared.key(
            self.root_value,
            self.operation,
            self.fragment_definitions.values(),
            self.variable_values.coerced,
            getattr(principal, "role", None),
        )
        if key is None:
            return super().execute_operation(serially)
        cached = shared.get(key)
        if cached is None:
            result = super().execute_operation(serially)
            cached = asyncio.ensure_future(result) if self.is_awaitable(result) else result
            shared.put(key, self.root_value, self.operation, cached)
        if isinstance(cached, asyncio.Future):
            return _await_shared(cached)
        return cached
