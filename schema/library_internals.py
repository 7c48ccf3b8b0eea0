"""The one place that reaches into Strawberry's and graphql-core's private attributes.

Strawberry offers no public accessor for the graphql-core schema it builds and executes with
(`Schema._schema`), which cost estimation, document validation and the live subscriptions need;
graphql-core 3.3 keeps a per-executor memo (`_relevant_sub_fields`) that its per-event copies
share (see shared_executor.py). tests/unit/test_library_internals.py fails first, naming what
moved, when an upgrade changes either; then adapt this module and nothing else.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLSchema


def graphql_core_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry executes with (its resolvers included)."""
    core = schema._schema
    if not isinstance(core, GraphQLSchema):  # pragma: no cover - an upgrade moved it
        raise TypeError("strawberry.Schema._schema is no longer a GraphQLSchema")
    return core


def fresh_subfield_memo(executor: Any) -> None:
    """Gives one subscription event's executor a memo of its own (graphql-core copies the
    subscription's executor shallowly per event, so the memo would grow with every event)."""
    executor._relevant_sub_fields = {}
