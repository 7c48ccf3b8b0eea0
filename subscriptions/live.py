"""Live subscriptions without a task or an async generator each.

Strawberry runs every subscription as a task around a chain of async generators (its own
stream, its extensions' hooks, graphql-core's mapping, ours) that lives as long as the
subscription: about 15 KB of an open dashboard's two subscriptions. Here a subscription is
a small object holding its request and its mailbox in the hub; the connection sends what
its mailboxes hold from one short-lived task (subscriptions/transport.py).

plan() takes every request that can succeed: a valid subscription document on one of our two
fields, with good variables and arguments, from a viewer. Anything else goes the usual
Strawberry way, which gives the same errors as before; the Strawberry resolvers (schema/
subscription.py) only check, and stream from this module's engine too (updates()).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
)
from graphql.execution.values import get_argument_values

from app.domain.errors import ServiceError
from app.web.context import Context
from schema.errors import classify
from schema.library_internals import graphql_core_schema, root_fields
from schema.rate_limit import check as over_budget
from schema.shared_executor import SharedEventExecutor
from schema.types import SyncMetrics, SyncUser
from subscriptions import streams
from subscriptions.hub import Hub, TenantFeed
from subscriptions.metrics_feed import MetricsSubscriber
from subscriptions.shared import SharedExecution
from subscriptions.subscriber import Backlog, SubscriberOverflow, UserIds, UserSubscriber

if TYPE_CHECKING:  # schema.schema imports this module (through schema/subscription.py)
    from schema.schema import SyncStatusSchema

USER_FIELD = "syncUserUpdated"
METRICS_FIELD = "syncMetricsUpdated"


class Documents:
    """Subscription documents through the schema's own cache of parsed and validated
    documents (schema/document_cache.py), validated with the rules of every other operation,
    under the same limits (schema/limits.py), their estimated cost kept with them."""

    def __init__(self, schema: SyncStatusSchema) -> None:
        self.schema: GraphQLSchema = graphql_core_schema(schema)
        self._cache = schema.documents
        self._rules = schema.operation_rules

    def valid(self, query: str) -> DocumentNode | None:
        """The document if it parses and validates, else None (and the usual path reports)."""
        if self._cache.validated(self.schema, query, self._rules):
            return None
        return self._cache.parsed(query).document

    def cost(self, query: str, document: DocumentNode) -> int:
        return self._cache.cost(self.schema, query, document)


@dataclass(slots=True)
class Stream:
    """What a subscription reads from the hub: one field's updates in the caller's tenant."""

    field: str
    tenant_id: int
    user_ids: UserIds | None  # syncUserUpdated's userIds; None: the whole tenant


@dataclass(slots=True)
class Plan(Stream):
    """A stream and what the transport needs to execute and send its events."""

    document: DocumentNode
    operation: OperationDefinitionNode
    variables: dict[str, Any] | None  # as sent, to build an executor for an event
    request_key: tuple[Hashable, ...]  # its part of the shared-execution key
    response_name: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A valid subscription not started: the error for the transport's `error` message."""

    error: GraphQLError
    operation: OperationDefinitionNode


async def plan(
    documents: Documents, shared: SharedExecution, context: Context, payload: dict[str, Any]
) -> Plan | Refused | None:
    """A subscription this module can serve, one it refuses before it starts (over the rate
    budget), or None for the usual path. The payload's shape was checked with its envelope
    (subscriptions/transport.py, _malformed): a string query, an object or null variables."""
    variables, operation_name = payload.get("variables"), payload.get("operationName")
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
    grouped = root_fields(documents.schema, executor, root, operation)
    if len(grouped) != 1:
        return None
    response_name, node, fragment_variables = grouped[0]
    field = node.name.value
    field_def = root.fields.get(field)
    if field not in (USER_FIELD, METRICS_FIELD) or field_def is None:
        return None
    try:
        args = get_argument_values(field_def, node, executor.variable_values, fragment_variables)
        tenant_id = await streams.check_tenant(context)
        user_ids = streams.parse_user_ids(args.get("userIds")) if field == USER_FIELD else None
    except (GraphQLError, ServiceError):
        return None
    refusal = await over_budget(context, lambda: documents.cost(payload["query"], document))
    if refusal is not None:
        # graphql-transport-ws: errors before execution are an `error` message, as HTTP
        # answers 429 before running anything (Strawberry's path sent `next`, then
        # `complete`, and spent the budget a second time).
        return Refused(refusal, operation)
    return Plan(
        field=field,
        tenant_id=tenant_id,
        user_ids=user_ids,
        document=document,
        operation=operation,
        variables=variables,
        request_key=shared.request_key(
            operation,
            executor.fragment_definitions.values(),
            executor.variable_values.coerced,
            context.principal_.role if context.principal_ else None,
        ),
        response_name=response_name,
    )


class LiveOperation:
    """One live subscription of a connection: its request and its place in the hub. It holds
    no executor (~3 KB each): an event's result is built once for all subscribers sending the
    same document and variables (subscriptions/shared.py), so one is built only then.
    Strawberry's pipeline holds one too, with a Stream only (updates())."""

    __slots__ = ("feed", "id", "plan", "subscriber")

    def __init__(
        self,
        operation_id: str,
        plan: Stream,
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
        plan: Stream,
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
        assert isinstance(plan, Plan), plan  # only the transport executes
        key = hub.shared.key_of(payload, plan.request_key)
        result = self._shared(key, payload, hub, schema, context)
        if isinstance(result, asyncio.Future):
            result = await asyncio.shield(result)  # others wait on it too: never cancel it
        elif inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        if not result.errors:
            return {"data": result.data}
        return {"data": result.data, "errors": [classify(e).formatted for e in result.errors]}

    def data_now(self, payload: Any, hub: Hub, schema: GraphQLSchema, context: Context) -> Any:
        """The `data` of the shared result for ``payload`` if it is there without waiting: run
        now by this subscriber or earlier by another one of the same document, variables and
        role, finished and without errors; else None (execute() then awaits or reports it).
        A result not shared (no key) is not run here: only execute() runs it."""
        plan = self.plan
        assert isinstance(plan, Plan), plan
        key = hub.shared.key_of(payload, plan.request_key)
        if key is None:
            return None
        result = self._shared(key, payload, hub, schema, context)
        if inspect.iscoroutine(result):  # run just now: a wait on the future it shared
            result.close()  # execute() waits instead
            result = hub.shared.get(key, count_miss=False)
        if isinstance(result, asyncio.Future):
            if not result.done() or result.cancelled() or result.exception() is not None:
                return None
            result = result.result()
        if not isinstance(result, ExecutionResult) or result.errors:
            return None
        return result.data

    def _shared(
        self, key: Any, payload: Any, hub: Hub, schema: GraphQLSchema, context: Context
    ) -> Any:
        """The result kept under ``key`` by an earlier subscriber, or run now (it shares what it
        builds: an awaitable part becomes a future the others wait on)."""
        plan = self.plan
        assert isinstance(plan, Plan), plan
        result = hub.shared.get(key, count_miss=False) if key is not None else None
        if result is None:
            executor = SharedEventExecutor.build(
                schema,
                plan.document,
                payload,
                context,
                plan.variables,
                plan.operation.name.value if plan.operation.name else None,
            )
            assert not isinstance(executor, list), executor  # the variables were coerced before
            result = executor.execute_operation(False)
        return result

    def overflow_payload(self) -> dict[str, Any]:
        assert isinstance(self.plan, Plan), self.plan  # only the transport sends this
        error = GraphQLError(
            "The subscriber fell too far behind; refetch and resubscribe.",
            path=[self.plan.response_name],
            original_error=streams.TooSlow(
                "The subscriber fell too far behind; refetch and resubscribe."
            ),
        )
        return {"data": None, "errors": [classify(error).formatted]}


async def updates(hub: Hub, stream: Stream) -> AsyncIterator[Any]:
    """The stream's payloads for Strawberry's own pipeline, which executes them (graphql-core).

    The transport serves every valid subscription itself (plan()), so Strawberry's pipeline
    only reaches here for one the transport does not see (schema.subscribe() in process). It
    still streams them, through a LiveOperation like the transport's, so that what
    subscribers get is implemented once."""
    woken = asyncio.Event()
    live = await LiveOperation.open("", stream, hub, lambda _: woken.set())
    try:
        while True:
            if not live.has_more:
                await woken.wait()
                woken.clear()
            try:
                payloads = live.payloads(hub)
            except SubscriberOverflow:
                raise streams.TooSlow(
                    "The subscriber fell too far behind; refetch and resubscribe."
                ) from None
            for payload in payloads:
                yield payload
    finally:
        await live.close(hub)


__all__ = [
    "Documents",
    "LiveOperation",
    "Plan",
    "Refused",
    "Stream",
    "SubscriberOverflow",
    "plan",
    "updates",
]
