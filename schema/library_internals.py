"""The one place that reaches into Strawberry's and graphql-core's private parts.

Strawberry offers no public accessor for the graphql-core schema it builds and executes with
(`Schema._schema`), which cost estimation, document validation and the live subscriptions need;
nor does it export its default execution context (which gives resolvers Strawberry's Info) or
the validation it runs (graphql-core's rules plus its own), which the subscription executor and
the document cache build on. graphql-core 3.3 keeps a per-executor memo (`_relevant_sub_fields`)
that its per-event copies share (see shared_executor.py), and does not export collect_fields,
which finds a subscription's one root field through aliases and fragments. Strawberry's ASGI
WebSocket adapter offers no way to send text already encoded (subscriptions/transport.py sends
one encoding of a shared result to many sockets), only its Starlette socket, `ws`.
tests/unit/test_library_internals.py fails first, naming what moved, when an upgrade changes any
of these; then adapt this module and nothing else.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
)
from graphql.execution.collect_fields import collect_fields
from starlette.websockets import WebSocket
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document

# Strawberry's default execution context: graphql-core's Executor, with resolve infos that
# Strawberry's Info wraps. Ours (schema/shared_executor.py) extends it.
StrawberryExecutor = StrawberryGraphQLCoreExecutionContext


def graphql_core_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry executes with (its resolvers included)."""
    core = schema._schema
    if not isinstance(core, GraphQLSchema):  # pragma: no cover - an upgrade moved it
        raise TypeError("strawberry.Schema._schema is no longer a GraphQLSchema")
    return core


def validate(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[Any, ...]
) -> list[GraphQLError]:
    """Validation as Strawberry runs it: ``rules`` and Strawberry's own rules."""
    return validate_document(schema, document, rules)


def root_fields(
    schema: GraphQLSchema,
    executor: Any,
    root: GraphQLObjectType,
    operation: OperationDefinitionNode,
) -> list[tuple[str, FieldNode, Any]]:
    """The operation's root fields as graphql-core executes them (aliases, fragments and
    directives applied): (response name, field node, its fragment variables) for each."""
    grouped = collect_fields(
        schema, executor.fragments, executor.variable_values, root, operation
    ).grouped_field_set
    return [
        (name, details[0].node, details[0].fragment_variable_values)
        for name, details in grouped.items()
    ]


def starlette_websocket(adapter: Any) -> WebSocket | None:
    """The Starlette socket under Strawberry's WebSocket adapter (None: another integration)."""
    ws = getattr(adapter, "ws", None)
    return ws if isinstance(ws, WebSocket) else None


def fresh_subfield_memo(executor: Any) -> None:
    """Gives one subscription event's executor a memo of its own (graphql-core copies the
    subscription's executor shallowly per event, so the memo would grow with every event)."""
    executor._relevant_sub_fields = {}
