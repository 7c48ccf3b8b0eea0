"""The one place that reaches into Strawberry's and graphql-core's private parts.

Strawberry offers no public accessor for the graphql-core schema it builds and executes with
(`Schema._schema`), which cost estimation, document validation and the live subscriptions need;
nor does it export its default execution context (which gives resolvers Strawberry's Info) or
the validation it runs (graphql-core's rules plus its own), which the subscription executor and
the document cache build on. graphql-core 3.3 keeps a per-executor memo (`_relevant_sub_fields`)
that its per-event copies share (see shared_executor.py), and does not export collect_fields,
which finds a subscription's one root field through aliases and fragments. Strawberry's
ExecutionContext.operation_name answers the first operation's name when the request named none,
so what the request gave is only in its `_provided_operation_name`. Strawberry's ASGI
WebSocket adapter offers no way to send text already encoded (subscriptions/transport.py sends
one encoding of a shared result to many sockets), only its Starlette socket, `ws`.
LeafFastExecutor overrides graphql-core's `Executor.execute_field` (documented as private) and
recognises Strawberry's resolver of plain attributes (`_get_basic_result`). Both it and
install_direct_resolvers find a field's Strawberry definition where Strawberry keeps it, in the
graphql-core field's extensions (`GraphQLCoreConverter.DEFINITION_BACKREF`), and build the
`Info` Strawberry gives resolvers as Strawberry does (`info_class(_raw_info=, _field=)`);
`resolve_info` reads graphql-core's info back from it (`_raw_info`), whose field nodes are
cheaper to walk than Strawberry's `selected_fields`, which converts them anew on each access.
tests/unit/test_library_internals.py fails first, naming what moved, when an upgrade changes any
of these; then adapt this module and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, NamedTuple, cast

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    is_leaf_type,
)
from graphql.execution.collect_fields import collect_fields
from graphql.pyutils import Undefined
from starlette.websockets import WebSocket
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

# Strawberry's default execution context: graphql-core's Executor, with resolve infos that
# Strawberry's Info wraps. Ours (schema/shared_executor.py) extends it.
StrawberryExecutor = StrawberryGraphQLCoreExecutionContext


LEAF_EXTENSION = "syncstatus.leaf"
_UNKNOWN = object()


class _Leaf(NamedTuple):
    read: Callable[[Any], Any]  # the plain attribute, as Strawberry's default resolver reads it
    type: GraphQLLeafType
    non_null: bool


def strawberry_field(field: GraphQLField) -> StrawberryField | None:
    """The Strawberry definition a graphql-core field was built from (None: not Strawberry's)."""
    found = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return found if isinstance(found, StrawberryField) else None


def _leaf_of(field: GraphQLField) -> _Leaf | None:
    """How to read a field without a resolver, arguments or field extensions whose type is a
    scalar or enum; None for any other field."""
    read = field.resolve
    if (
        read is None
        or field.args
        or getattr(read, "__name__", None) != "_get_basic_result"
        or not getattr(read, "_is_default", False)
    ):
        return None
    kind = field.type
    leaf = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
    if not is_leaf_type(leaf):
        return None
    # Strawberry's resolver of a basic field calls its default resolver (getattr, unless the
    # schema's config names another) through two more calls; the attribute is read directly.
    definition = strawberry_field(field)
    if definition is not None and definition.default_resolver is getattr:
        read = attrgetter(definition.python_name)
    return _Leaf(read, leaf, leaf is not kind)


def install_direct_resolvers(schema: strawberry.Schema) -> list[str]:
    """Lets graphql-core call the resolvers of fields without arguments directly (e.g.
    SyncUser.policy, version, currentRun), and answers which fields ("Type.field").

    Strawberry wraps every resolver in per-call machinery for arguments, field extensions and
    exception handlers: converting the (absent) arguments, a chain of partials and four more
    calls, ~5 us per field. A page of 10 users has 30 such fields (~0.14 ms of its request),
    and every subscription event runs them too. A field with no arguments, field
    extensions (permissions are one), exception handlers, root or parent parameter needs none
    of it: its resolver gets the object and the same Info, and returns what it returned
    before. Schema extensions' resolve hooks still wrap every field (graphql-core applies
    middleware to whatever resolves it); subscription fields keep Strawberry's path."""
    if schema.exception_handlers:
        return []
    core = graphql_core_schema(schema)
    info_class = schema.config.info_class
    installed: list[str] = []
    for type_ in core.type_map.values():
        if (
            not isinstance(type_, GraphQLObjectType)
            or type_.name.startswith("__")
            or type_ is core.subscription_type
        ):
            continue
        for name, field in type_.fields.items():
            resolve = _direct_resolver(field, info_class)
            if resolve is not None:
                field.resolve = resolve
                installed.append(f"{type_.name}.{name}")
    return installed


def _direct_resolver(field: GraphQLField, info_class: type[Any]) -> Callable[..., Any] | None:
    definition = strawberry_field(field)
    resolver = definition.base_resolver if definition is not None else None
    if (
        definition is None
        or resolver is None
        or definition.arguments
        or definition.extensions
        or resolver.root_parameter is not None
        or resolver.parent_parameter is not None
    ):
        return None
    takes_self = resolver.self_parameter is not None
    info = resolver.info_parameter
    if len(resolver.signature.parameters) != takes_self + (info is not None):
        return None
    call = resolver.wrapped_func
    if not callable(call):
        return None
    if info is None:
        if takes_self:
            return lambda source, _info: call(source)
        return lambda _source, _info: call()
    info_name = info.name

    def resolve(source: Any, raw: Any) -> Any:
        given = {info_name: info_class(_raw_info=raw, _field=definition)}
        return call(source, **given) if takes_self else call(**given)

    return resolve


class LeafFastExecutor(StrawberryExecutor):
    """graphql-core's executor with a short path for plain scalar and enum attributes.

    A page of users is mostly such fields (email, status, ids, cursors, a run's counts).
    graphql-core completes each one through a resolve info, awaitable checks and a chain of
    type tests: for the page's own query (rows with both runs) that was ~8% of its time. Here
    such a field is read and coerced as graphql-core would (`coerce_output_value`, as
    complete_leaf_value does); anything unusual (null in a non-null field, an error,
    middleware that wraps resolvers) takes the usual path, which then reports it as before.
    """

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        field = parent_type.fields.get(node.name.value)
        if field is not None and not node.arguments:
            # Worked out once per field, and kept with it (its `extensions`, which Strawberry
            # makes for each field), so it lives and goes with its schema.
            leaf = field.extensions.get(LEAF_EXTENSION, _UNKNOWN)
            if leaf is _UNKNOWN:
                leaf = field.extensions[LEAF_EXTENSION] = _leaf_of(field)
            manager = self.middleware_manager
            if leaf is not None and (manager is None or not manager.middlewares):
                try:
                    value = leaf.read(source)
                    if value is None:
                        if not leaf.non_null:
                            return None
                    else:
                        coerced = leaf.type.coerce_output_value(value)
                        if coerced is not None and coerced is not Undefined:
                            return coerced
                except Exception:  # the usual path reports it
                    pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )


def resolve_info(info: strawberry.Info) -> GraphQLResolveInfo:
    """graphql-core's info under Strawberry's: the field nodes and fragments as parsed."""
    # Strawberry's execution context builds its own tuple of graphql-core's fields.
    raw = getattr(info, "_raw_info", None)
    if not (hasattr(raw, "field_nodes") and hasattr(raw, "fragments")):  # pragma: no cover
        raise TypeError("strawberry.Info no longer keeps graphql-core's info as _raw_info")
    return cast(GraphQLResolveInfo, raw)


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


def provided_operation_name(execution_context: Any) -> str | None:
    """The operationName the request gave (None: none), not Strawberry's guess."""
    if not hasattr(execution_context, "_provided_operation_name"):  # pragma: no cover
        raise TypeError("strawberry's ExecutionContext no longer keeps _provided_operation_name")
    name = execution_context._provided_operation_name
    return name if isinstance(name, str) else None


def starlette_websocket(adapter: Any) -> WebSocket | None:
    """The Starlette socket under Strawberry's WebSocket adapter (None: another integration)."""
    ws = getattr(adapter, "ws", None)
    return ws if isinstance(ws, WebSocket) else None


def fresh_subfield_memo(executor: Any) -> None:
    """Gives one subscription event's executor a memo of its own (graphql-core copies the
    subscription's executor shallowly per event, so the memo would grow with every event)."""
    executor._relevant_sub_fields = {}
