"""Live subscriptions without a task or an async generator each.

Strawberry runs every subscription as a task around a chain of async generators (its own
stream, its extensions' hooks, graphql-core's mapping, ours) that lives as long as the
subscription: about 15 KB of an open dashboard's two subscriptions. Here a subscription is
a small object holding its request and its mailbox in the hub; the connection sends what
its mailboxes hold from one short-lived task (subscriptions/transport.py).

plan() takes only requests that certainly succeed: a cached, valid subscription document on
one of our two fields, with good variables and arguments, from a viewer. Anything else goes
the usual Strawberry way, which gives the same errors as before.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    specified_rules,
    validate,
)
from graphql.execution.collect_fields import collect_fields
from graphql.execution.values import get_argument_values
from strawberry.extensions import QueryDepthLimiter

from app.domain.errors import ServiceError
from app.web.context import Context
from schema.document_cache import BoundedCache, document_bytes
from schema.errors import classify
from schema.limits import DocumentLimits, parse_document, query_cost, validation_rules
from schema.rate_limit import check as over_budget
from schema.shared_executor import SharedEventExecutor
from schema.types import SyncMetrics, SyncUser
from subscriptions import streams
from subscriptions.hub import Hub, TenantFeed
from subscriptions.metrics_feed import MetricsSubscriber
from subscriptions.shared import SharedExecution
from subscriptions.subscriber import Backlog, SubscriberOverflow, UserSubscriber

USER_FIELD = "syncUserUpdated"
METRICS_FIELD = "syncMetricsUpdated"
# Open pages send a handful of documents; bounds keep odd clients from filling memory
# (a document of 5,000 tokens parses to about 2 MB).
MAX_DOCUMENTS = 100
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class Documents:
    """Parsed and validated subscription documents, by query text (one per schema), under
    the same limits as every other document (schema/limits.py)."""

    def __init__(self, schema: GraphQLSchema, limits: DocumentLimits) -> None:
        self.schema = schema
        self.limits = limits
        self.rules = (
            *specified_rules,
            *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
            *validation_rules(limits),
        )
        self._cache: BoundedCache[DocumentNode] = BoundedCache(MAX_DOCUMENTS, MAX_DOCUMENT_BYTES)

    def valid(self, query: str) -> DocumentNode | None:
        """The document if it parses and validates, else None (and the usual path reports)."""
        if (found := self._cache.get(query)) is not None:
            return found
        try:
            document = parse_document(query, self.limits)
        except GraphQLError:
            return None  # the usual path reports it; an oversized text is not kept
        if validate(self.schema, document, self.rules):
            return None
        self._cache.put(query, document, document_bytes(query, document))
        return document


@dataclass(slots=True)
class Plan:
    document: DocumentNode
    operation: OperationDefinitionNode
    variables: dict[str, Any] | None  # as sent, to build an executor for an event
    request_key: tuple[Hashable, ...]  # its part of the shared-execution key
    field: str
    response_name: str
    tenant_id: int
    user_ids: frozenset[int] | None


async def plan(
    documents: Documents, shared: SharedExecution, context: Context, payload: Any
) -> Plan | None:
    """A subscription this module can serve, or None for the usual path."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return None
    variables, operation_name = payload.get("variables"), payload.get("operationName")
    if not isinstance(variables, dict | None) or not isinstance(operation_name, str | None):
        return None
    document = documents.valid(payload["query"])
    if document is None:
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return None
    executor = SharedEventExecutor.build(
        documents.schema, document, None, context, variables, operation_name
    )
    if isinstance(executor, list):  # bad variables
        return None
    root = documents.schema.subscription_type
    assert root is not None  # the schema has subscriptions
    grouped = collect_fields(
        documents.schema, executor.fragments, executor.variable_values, root, operation
    ).grouped_field_set
    if len(grouped) != 1:
        return None
    response_name, details = next(iter(grouped.items()))
    field = details[0].node.name.value
    field_def = root.fields.get(field)
    if field not in (USER_FIELD, METRICS_FIELD) or field_def is None:
        return None
    try:
        args = get_argument_values(
            field_def,
            details[0].node,
            executor.variable_values,
            details[0].fragment_variable_values,
        )
        tenant_id = await streams.check_tenant(context)
        user_ids = streams.parse_user_ids(args.get("userIds")) if field == USER_FIELD else None
    except (GraphQLError, ServiceError):
        return None
    if await over_budget(context, query_cost(documents.schema, document)):
        return None  # the usual path refuses it with RATE_LIMITED
    return Plan(
        document,
        operation,
        variables,
        shared.request_key(
            operation,
            executor.fragment_definitions.values(),
            executor.variable_values.coerced,
            context.principal_.role if context.principal_ else None,
        ),
        field,
        response_name,
        tenant_id,
        user_ids,
    )


class LiveOperation:
    """One live subscription of a connection: its request and its place in the hub. It holds
    no executor (~3 KB each): an event's result is built once for all subscribers sending the
    same document and variables (subscriptions/shared.py), so one is built only then."""

    __slots__ = ("feed", "id", "plan", "subscriber")

    def __init__(
        self,
        operation_id: str,
        plan: Plan,
        feed: TenantFeed,
        subscriber: UserSubscriber | MetricsSubscriber,
    ) -> None:
        self.id = operation_id
        self.plan = plan
        self.feed = feed
        self.subscriber = subscriber

    @staticmethod
    async def open(
        operation_id: str,
        plan: Plan,
        hub: Hub,
        wake: Callable[[LiveOperation], None],
        backlog: Backlog | None = None,
    ) -> LiveOperation:
        """The subscription, its mailbox counted in the connection's ``backlog`` if given."""
        subscriber: UserSubscriber | MetricsSubscriber
        if plan.field == USER_FIELD:
            feed, subscriber = await hub.add_users(plan.tenant_id, plan.user_ids)
            if backlog is not None:
                subscriber.join(backlog)
        else:
            feed, subscriber = await hub.add_metrics(plan.tenant_id)
        live = LiveOperation(operation_id, plan, feed, subscriber)
        subscriber.listener = lambda: wake(live)
        if isinstance(subscriber, MetricsSubscriber):
            wake(live)  # the metrics at once
        return live

    async def close(self, hub: Hub) -> None:
        subscriber = self.subscriber
        subscriber.listener = None
        if isinstance(subscriber, UserSubscriber):
            subscriber.leave()
            await hub.remove_users(self.feed, subscriber)
        else:
            await hub.remove_metrics(self.feed, subscriber)

    def payloads(self, hub: Hub) -> list[Any]:
        """The next of what is ready to send (the metrics, or one user's events), converted
        once for all subscribers (may raise SubscriberOverflow). The rest stays in the mailbox,
        where it is bounded and coalesced while the socket is slow."""
        subscriber = self.subscriber
        if isinstance(subscriber, MetricsSubscriber):
            metrics = subscriber.take()
            return [] if metrics is None else [hub.shared.payload(metrics, SyncMetrics.of)]
        return [hub.shared.payload(event.user, SyncUser.of) for event in subscriber.take_batch()]

    @property
    def has_more(self) -> bool:
        subscriber = self.subscriber
        if isinstance(subscriber, MetricsSubscriber):
            return subscriber.latest is not None
        return bool(subscriber.pending or subscriber.overflowed)

    def measured(self, message_bytes: int) -> None:
        """The size of the message just sent: what the budget counts for each waiting one."""
        if isinstance(self.subscriber, UserSubscriber):
            self.subscriber.measured(message_bytes)

    async def execute(
        self, payload: Any, hub: Hub, schema: GraphQLSchema, context: Context
    ) -> dict[str, Any]:
        """The `next` payload for one event, executed once for every subscriber of the same
        document, variables and role."""
        plan = self.plan
        key = hub.shared.key_of(payload, plan.request_key)
        result = hub.shared.get(key, count_miss=False) if key is not None else None
        if result is None:
            executor = SharedEventExecutor.build(
                schema,
                plan.document,
                payload,
                context,
                plan.variables,
                plan.operation.name and plan.operation.name.value,
            )
            assert not isinstance(executor, list), executor  # the variables were coerced before
            result = executor.execute_operation(False)  # shares what it builds
        if isinstance(result, asyncio.Future):
            result = await asyncio.shield(result)  # others wait on it too: never cancel it
        elif inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        if not result.errors:
            return {"data": result.data}
        return {"data": result.data, "errors": [classify(e).formatted for e in result.errors]}

    def overflow_payload(self) -> dict[str, Any]:
        error = GraphQLError(
            "The subscriber fell too far behind; refetch and resubscribe.",
            path=[self.plan.response_name],
            original_error=streams.TooSlow(
                "The subscriber fell too far behind; refetch and resubscribe."
            ),
        )
        return {"data": None, "errors": [classify(error).formatted]}


__all__ = ["Documents", "LiveOperation", "Plan", "SubscriberOverflow", "plan"]
