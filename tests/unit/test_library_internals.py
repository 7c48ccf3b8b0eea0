"""The private attributes schema/library_internals.py reads (no public API offers them).

If an upgrade of strawberry-graphql or graphql-core changes any of these, this fails first and
names what moved; then adapt schema/library_internals.py, the one place that uses them."""

from __future__ import annotations

import graphql
from graphql import GraphQLSchema, parse

from schema.library_internals import fresh_subfield_memo, graphql_core_schema
from schema.schema import build_schema
from schema.shared_executor import SharedEventExecutor


def test_strawberry_keeps_the_graphql_core_schema_it_executes_with() -> None:
    schema = build_schema()
    core = graphql_core_schema(schema)
    assert isinstance(core, GraphQLSchema), "strawberry.Schema._schema moved"
    # The very schema Strawberry executes against, resolvers included, not a rebuilt copy.
    assert core.query_type is not None and core.query_type.fields["syncMetrics"].resolve
    assert core.subscription_type is not None
    assert set(core.subscription_type.fields) >= {"syncUserUpdated", "syncMetricsUpdated"}


def test_graphql_core_keeps_a_subfield_memo_on_each_executor() -> None:
    core = graphql_core_schema(build_schema())
    context = SharedEventExecutor.build(core, parse("{ __typename }"))
    assert isinstance(context, SharedEventExecutor), context
    memo = getattr(context, "_relevant_sub_fields", None)
    assert isinstance(memo, dict), (
        f"graphql-core {graphql.__version__} no longer keeps Executor._relevant_sub_fields:"
        " check schema/shared_executor.py's per-event memo"
    )
    # What SharedEventExecutor.build_per_event_executor starts from (its super()): a copy that
    # shares the memo. If it stops sharing, the fix is no longer needed: say so here.
    base = super(SharedEventExecutor, context)
    copy = base.build_per_event_executor(None)
    assert copy._relevant_sub_fields is memo, "per-event executors no longer share the memo"
    fresh_subfield_memo(copy)
    assert copy._relevant_sub_fields == {} and copy._relevant_sub_fields is not memo
    ours = context.build_per_event_executor(None)
    assert ours._relevant_sub_fields is not memo
