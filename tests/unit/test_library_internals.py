"""The private parts schema/library_internals.py uses (no public API offers them).

If an upgrade of strawberry-graphql or graphql-core changes any of these, this fails first and
names what moved; then adapt schema/library_internals.py, the one place that uses them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, NoReturn

import graphql
import strawberry
from graphql import Executor, GraphQLObjectType, GraphQLSchema, parse
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from schema.library_internals import (
    LeafFastExecutor,
    StrawberryExecutor,
    fresh_subfield_memo,
    graphql_core_schema,
    provided_operation_name,
    root_fields,
    starlette_websocket,
    validate,
)
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
    copy = super(SharedEventExecutor, context).build_per_event_executor(None)
    assert copy._relevant_sub_fields is memo, "per-event executors no longer share the memo"
    fresh_subfield_memo(copy)
    assert copy._relevant_sub_fields == {} and copy._relevant_sub_fields is not memo
    ours = context.build_per_event_executor(None)
    assert ours._relevant_sub_fields is not memo


@strawberry.type
class _Query:
    hello: str = "hi"


def test_strawberrys_default_execution_context_is_the_one_we_extend() -> None:
    # Ours (SharedEventExecutor) must keep what Strawberry's default adds to graphql-core's.
    assert strawberry.Schema(query=_Query).execution_context_class is StrawberryExecutor, (
        "strawberry.Schema's default execution context is no longer"
        " strawberry.schema.schema.StrawberryGraphQLCoreExecutionContext"
    )
    assert issubclass(StrawberryExecutor, Executor)


def test_strawberry_validates_with_the_rules_it_is_given() -> None:
    core = graphql_core_schema(build_schema())
    assert validate(core, parse("{ syncMetrics { totalUsers } }"), graphql.specified_rules) == []
    errors = validate(core, parse("{ nope }"), graphql.specified_rules)
    assert [e.message.split(".")[0] for e in errors] == [
        "Cannot query field 'nope' on type 'Query'"
    ]


def test_graphql_core_collects_a_subscriptions_root_field_through_aliases_and_fragments() -> None:
    core = graphql_core_schema(build_schema())
    document = parse(
        """subscription S($ids: [ID!]) { ...F }
        fragment F on Subscription { mine: syncUserUpdated(userIds: $ids) { id } }"""
    )
    executor = SharedEventExecutor.build(core, document, raw_variable_values={"ids": ["x"]})
    assert isinstance(executor, SharedEventExecutor), executor
    assert core.subscription_type is not None
    found = root_fields(core, executor, core.subscription_type, executor.operation)
    assert [(name, node.name.value) for name, node, _ in found] == [("mine", "syncUserUpdated")]


def test_strawberrys_asgi_websocket_adapter_holds_the_starlette_socket() -> None:
    async def never(*_: object) -> NoReturn:  # pragma: no cover - nothing is sent or received
        raise AssertionError

    socket = WebSocket({"type": "websocket", "path": "/", "headers": []}, never, never)
    view = GraphQL(build_schema())
    adapter = view.websocket_adapter_class(view, socket, socket)
    assert starlette_websocket(adapter) is socket, (
        "strawberry.asgi's WebSocket adapter no longer keeps the Starlette socket as .ws:"
        " subscriptions/transport.py then encodes every shared result once per socket"
    )


def test_uvicorn_websocket_protocol_keeps_what_app_web_ws_protocol_uses() -> None:
    """app/web/ws_protocol.py subclasses uvicorn's sans-I/O WebSocket protocol and reads its
    state to write serialized frames as its own send would: the buffer's writable event,
    disconnected, close_sent, and websockets' connection (state, negotiated extensions). It
    empties the handshake request's headers because websockets' parser keeps the request."""
    import asyncio

    from uvicorn.config import Config
    from uvicorn.server import ServerState
    from websockets.http11 import Request
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    from app.web.ws_protocol import AbortableWebSocketProtocol

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    config = Config(app=app, ws=AbortableWebSocketProtocol, ws_per_message_deflate=False)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = AbortableWebSocketProtocol(config, ServerState(), {}, _loop=loop)
        assert protocol.writable.is_set() and protocol.queue.empty()
        assert protocol.disconnected is False and protocol.close_sent is False
        conn = protocol.conn
        assert isinstance(conn, ServerProtocol) and conn.state is State.CONNECTING
        conn.receive_data(
            b"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        (request,) = conn.events_received()
        assert isinstance(request, Request)
        conn.send_response(conn.accept(request))
        assert conn.state is State.OPEN and conn.extensions == []
        parser = conn.parser.gi_frame
        assert parser is not None and parser.f_locals.get("request") is request, (
            "websockets' parser no longer keeps the handshake request: emptying its headers "
            "in app/web/ws_protocol.py is no longer needed"
        )
    finally:
        loop.close()


def test_uvicorn_uses_only_what_the_lighter_queue_and_event_offer() -> None:
    """app/web/ws_protocol.py replaces uvicorn's per-socket asyncio.Queue and asyncio.Event
    with lighter objects offering only the methods uvicorn calls on them; a new call fails
    here first."""
    import inspect
    import re

    from uvicorn.protocols.websockets import websockets_sansio_impl

    source = inspect.getsource(websockets_sansio_impl.WebSocketsSansIOProtocol)
    assert set(re.findall(r"self\.queue\.(\w+)", source)) <= {"put_nowait", "get", "empty"}
    assert set(re.findall(r"self\.writable\.(\w+)", source)) <= {"set", "clear", "wait", "is_set"}
    assert re.findall(r"self\.queue\b(?!\.)", source) == ["self.queue"]  # only its creation
    assert re.findall(r"self\.writable\b(?!\.)", source) == ["self.writable"]


def test_strawberrys_plain_attribute_fields_are_recognised() -> None:
    """LeafFastExecutor reads a field without graphql-core's completion only when Strawberry
    resolves it with its resolver of plain attributes; if that is renamed, no field takes the
    short path (pages get ~8% slower) and this names what moved."""
    from schema.library_internals import _leaf_of

    core = graphql_core_schema(build_schema())
    sync_user = core.type_map["SyncUser"]
    assert isinstance(sync_user, GraphQLObjectType)
    user = sync_user.fields
    fast = {name for name, field in user.items() if _leaf_of(field) is not None}
    assert {"id", "email", "status", "latestSyncAt"} <= fast, (
        "strawberry's resolver of basic fields is no longer `_get_basic_result` marked"
        " `_is_default`: see schema/library_internals.py LeafFastExecutor"
    )
    # Each field has its own extensions, where the short path is kept (with its schema).
    assert len({id(field.extensions) for field in user.values()}) == len(user)
    # Resolvers, objects and fields with arguments keep graphql-core's own path.
    assert not fast & {"version", "policy", "currentRun", "runs"}
    assert _leaf_of(core.query_type.fields["syncUsers"]) is None  # type: ignore[union-attr]


def test_graphql_core_still_executes_fields_as_leaf_fast_executor_overrides() -> None:
    import inspect

    parameters = list(inspect.signature(Executor.execute_field).parameters)
    assert parameters == [
        "self",
        "parent_type",
        "source",
        "field_details_list",
        "path",
        "position_context",
    ], f"graphql-core {graphql.__version__} changed Executor.execute_field: {parameters}"
    assert issubclass(SharedEventExecutor, LeafFastExecutor)


@strawberry.enum
class _Color(Enum):
    RED = "red"


@strawberry.type
class _Thing:
    name: str | None
    must: str
    color: _Color
    when: datetime
    count: int


@strawberry.type
class _Things:
    @strawberry.field
    def things(self) -> list[_Thing | None]:
        return [
            _Thing(name="a", must="b", color=_Color.RED, when=datetime(2026, 1, 2), count=3),
            _Thing(name=None, must="b", color=_Color.RED, when=datetime(2026, 1, 2), count=3),
            _Thing(name="c", must=None, color=_Color.RED, when=datetime(2026, 1, 2), count=3),  # type: ignore[arg-type]
            _Thing(name="d", must="e", color="blue", when="soon", count="x"),  # type: ignore[arg-type]
        ]


Errors = list[tuple[str, tuple[str | int, ...]]]


def _run(
    executor: type[Executor] | None, query: str, **kwargs: object
) -> tuple[dict[str, Any] | None, Errors]:
    import asyncio

    options = {"execution_context_class": executor} if executor else {}
    schema = strawberry.Schema(query=_Things, **options, **kwargs)  # type: ignore[arg-type]
    result = asyncio.run(schema.execute(query))
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or ())
    return result.data, errors


THINGS = "{ things { name color when count a: name ...F } } fragment F on Thing { count }"
NON_NULL = "{ things { must } }"


def test_the_leaf_short_path_answers_exactly_as_graphql_core() -> None:
    # Values, nulls, aliases, fragments, and values a scalar or enum refuses: same data, same
    # errors at the same paths.
    ours = _run(LeafFastExecutor, THINGS)
    assert ours == _run(None, THINGS)
    data, errors = ours
    assert data == {
        "things": [
            {"name": "a", "color": "RED", "when": "2026-01-02T00:00:00", "count": 3, "a": "a"},
            {"name": None, "color": "RED", "when": "2026-01-02T00:00:00", "count": 3, "a": None},
            {"name": "c", "color": "RED", "when": "2026-01-02T00:00:00", "count": 3, "a": "c"},
            None,
        ]
    }
    assert [path for _, path in errors] == [("things", 3, "color")], errors
    # A null in a non-null field: graphql-core's own error, propagated as before.
    ours = _run(LeafFastExecutor, NON_NULL)
    assert ours == _run(None, NON_NULL)
    assert ours[0] == {"things": [{"must": "b"}, {"must": "b"}, None, {"must": "e"}]}
    message = "Cannot return null for non-nullable field Thing.must."
    assert ours[1] == [(message, ("things", 2, "must"))]


def _spy(seen: list[str]) -> type:
    """A schema extension whose resolve hook (graphql-core middleware) notes every field."""
    from strawberry.extensions import SchemaExtension

    class Spy(SchemaExtension):
        def resolve(self, _next, root, info, *args, **kwargs):
            seen.append(info.field_name)
            return _next(root, info, *args, **kwargs)

    return Spy


def test_resolver_middleware_still_sees_every_field() -> None:
    seen: list[str] = []
    Spy = _spy(seen)
    query = "{ things { count } }"
    _run(LeafFastExecutor, query, extensions=[Spy])
    ours = list(seen)
    seen.clear()
    _run(None, query, extensions=[Spy])
    assert ours == seen and ours.count("count") == 4


def test_strawberry_keeps_the_operation_name_a_request_gave() -> None:
    """ExecutionContext.operation_name guesses the first operation's; the one given is kept
    apart (schema/document_cache.py refuses several operations with none named)."""
    from strawberry.types.execution import ExecutionContext

    schema = build_schema()
    document = parse("query A { __typename } query B { __typename }")
    unnamed = ExecutionContext(
        query=None, schema=schema, allowed_operations=(), provided_operation_name=None
    )
    unnamed.graphql_document = document
    assert unnamed.operation_name == "A"  # the guess
    assert provided_operation_name(unnamed) is None
    named = ExecutionContext(
        query=None, schema=schema, allowed_operations=(), provided_operation_name="B"
    )
    assert provided_operation_name(named) == "B"


def test_strawberry_keeps_each_fields_definition_on_the_graphql_core_field() -> None:
    from schema.library_internals import strawberry_field

    core = graphql_core_schema(build_schema())
    sync_user = core.type_map["SyncUser"]
    assert isinstance(sync_user, GraphQLObjectType)
    email = strawberry_field(sync_user.fields["email"])
    assert email is not None, (
        "strawberry no longer keeps its field under GraphQLCoreConverter.DEFINITION_BACKREF"
        " in the graphql-core field's extensions: see schema/library_internals.py"
    )
    assert email.python_name == "email" and email.default_resolver is getattr


def test_resolvers_without_arguments_are_called_directly() -> None:
    schema = build_schema()
    installed = set(schema.direct_resolvers)
    # A page's per-row resolvers, and the others without arguments.
    assert {
        "SyncUser.policy",
        "SyncUser.version",
        "SyncUser.currentRun",
        "SyncUser.lastFinishedRun",
        "SyncRun.progress",
        "SyncUserConnection.totalCount",
        "Query.viewer",
    } <= installed
    # Fields with arguments, subscriptions and basic attributes keep their path.
    assert not installed & {"SyncUser.runs", "Query.syncUsers", "SyncUser.email"}
    assert not {name for name in installed if name.startswith("Subscription.")}
    core = graphql_core_schema(schema)
    sync_user = core.type_map["SyncUser"]
    assert isinstance(sync_user, GraphQLObjectType)
    assert sync_user.fields["policy"].resolve.__module__ == "schema.library_internals"


class _Deny(strawberry.BasePermission):
    message = "denied"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


@strawberry.type
class _Row:
    value: int

    @strawberry.field
    def doubled(self) -> int:
        return self.value * 2

    @strawberry.field
    def seen(self, info: strawberry.Info) -> str:
        # What a resolver reads off Info: the context, its field, the selection below it.
        return f"{info.context['who']}:{info.field_name}:{info.python_name}"

    @strawberry.field
    async def later(self, info: strawberry.Info) -> int:
        return self.value + len(info.context["who"])

    @strawberry.field(permission_classes=[_Deny])
    def secret(self) -> int | None:
        return self.value

    @strawberry.field
    def plus(self, n: int) -> int:
        return self.value + n

    @strawberry.field
    def failing(self) -> int | None:
        raise ValueError("no")


@strawberry.type
class _Rows:
    @strawberry.field
    def rows(self) -> list[_Row]:
        return [_Row(value=1), _Row(value=2)]

    @strawberry.field
    @staticmethod
    def constant() -> str:
        return "c"


ROWS = "{ constant rows { doubled seen later secret plus(n: 3) failing v: value } }"


def _rows(direct: bool, **kwargs: object) -> tuple[Any, Errors, list[str]]:
    import asyncio

    from schema.library_internals import install_direct_resolvers

    schema = strawberry.Schema(query=_Rows, **kwargs)  # type: ignore[arg-type]
    installed = install_direct_resolvers(schema) if direct else []
    result = asyncio.run(schema.execute(ROWS, context_value={"who": "ann"}))
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or ())
    return result.data, errors, sorted(installed)


def test_direct_resolvers_answer_exactly_as_strawberrys_path() -> None:
    data, errors, installed = _rows(True)
    assert (data, errors) == _rows(False)[:2]
    assert installed == [
        "Row.doubled",
        "Row.failing",
        "Row.later",
        "Row.seen",
        "Rows.constant",
        "Rows.rows",
    ], "a permission class, or an argument, keeps Strawberry's own path"
    assert data == {
        "constant": "c",
        "rows": [
            {"doubled": 2, "seen": "ann:seen:seen", "later": 4, "secret": None, "plus": 4}
            | {"failing": None, "v": 1},
            {"doubled": 4, "seen": "ann:seen:seen", "later": 5, "secret": None, "plus": 5}
            | {"failing": None, "v": 2},
        ],
    }
    assert errors == [
        ("denied", ("rows", 0, "secret")),
        ("denied", ("rows", 1, "secret")),
        ("no", ("rows", 0, "failing")),
        ("no", ("rows", 1, "failing")),
    ]


def test_schema_extensions_still_see_directly_resolved_fields() -> None:
    seen: list[str] = []
    Spy = _spy(seen)
    _rows(False, extensions=[Spy])
    theirs = sorted(seen)
    seen.clear()
    _rows(True, extensions=[Spy])
    assert sorted(seen) == theirs and seen.count("doubled") == 2


@strawberry.type
class _Oops:
    message: str


class _Converts(strawberry.ExceptionHandler[ValueError, _Oops]):
    def handle(self, exception: ValueError, *, field: Any, info: Any) -> _Oops:
        return _Oops(message=str(exception))


def test_a_schema_with_exception_handlers_keeps_strawberrys_path() -> None:
    # Strawberry's wrapper is where exceptions become union results: nothing may bypass it.
    from schema.library_internals import install_direct_resolvers

    schema = strawberry.Schema(query=_Rows, types=[_Oops], exception_handlers=[_Converts()])
    assert install_direct_resolvers(schema) == []


def test_strawberrys_info_keeps_graphql_cores_field_nodes() -> None:
    """schema/query.py `selected` walks them instead of Strawberry's selected_fields."""
    import asyncio

    from schema.library_internals import resolve_info

    seen: dict[str, Any] = {}

    @strawberry.type
    class Query:
        @strawberry.field
        def things(self, info: strawberry.Info) -> list[_Thing]:
            raw = resolve_info(info)
            seen["nodes"] = [node.name.value for node in raw.field_nodes]
            seen["fragments"] = sorted(raw.fragments)
            return []

    schema = strawberry.Schema(query=Query)
    result = asyncio.run(
        schema.execute("{ things { name } things { ...F } } fragment F on Thing { count }")
    )
    assert result.errors is None, result.errors
    assert seen == {"nodes": ["things", "things"], "fragments": ["F"]}
