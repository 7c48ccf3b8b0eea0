"""One payload per event for all its subscribers, and one execution of a subscription's
selection set per payload and document.

The hub hands the same event to every subscriber that watches the user (and the same
metrics to every metrics subscriber of the tenant); open dashboards send the same document.
So instead of a thousand identical GraphQL executions for a thousand dashboards, the first
subscriber executes and the others reuse its result (schema/shared_executor.py). A result
depends on the payload (an immutable snapshot of one tenant's state), the operation, the
variables used below the subscription field and the caller's role; nothing else of the
caller is read by the fields of SyncUser and SyncMetrics.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from graphql import Node, OperationDefinitionNode, VariableNode, visit
from graphql.language import Visitor
from websockets.frames import Frame, Opcode

T = TypeVar("T")
MAX_PAYLOADS = 256
MAX_RESULTS = 256


class _Bounded(OrderedDict[Hashable, Any]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Hashable, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class _VariableNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable(self, node: VariableNode, *_args: Any) -> None:
        self.names.add(node.name.value)


class SharedExecution:
    def __init__(self, payloads: int = MAX_PAYLOADS, results: int = MAX_RESULTS) -> None:
        # Entries keep their key objects alive, so an id() is never reused while cached.
        self._payloads = _Bounded(payloads)  # id(view) -> (view, payload)
        self._shared = _Bounded(payloads)  # id(payload) -> payload
        self._results = _Bounded(results)  # key -> (payload, operation, result)
        self._variables = _Bounded(256)  # id(operation) -> (operation, names)
        self._json = _Bounded(results)  # id(data) -> (data, JSON text)
        self._frames = _Bounded(results)  # (id(data), operation id) -> (data, frame)
        self.hits = 0
        self.misses = 0
        self.frames_sent = 0  # `next` messages written as frames built once (transport.py)

    def payload(self, view: object, convert: Callable[[Any], T]) -> T:
        """The GraphQL object for ``view``, built once for all subscribers."""
        entry = self._payloads.get(id(view))
        if entry is not None and entry[0] is view:
            return entry[1]
        payload = convert(view)
        self._payloads.put(id(view), (view, payload))
        self._shared.put(id(payload), payload)
        return payload

    def key(
        self,
        payload: object,
        operation: OperationDefinitionNode,
        fragments: Iterable[Node],
        variables: dict[str, Any],
        role: str | None,
    ) -> tuple[Hashable, ...] | None:
        """The cache key of executing ``operation`` on ``payload``; None if not shared."""
        return self.key_of(payload, self.request_key(operation, fragments, variables, role))

    def request_key(
        self,
        operation: OperationDefinitionNode,
        fragments: Iterable[Node],
        variables: dict[str, Any],
        role: str | None,
    ) -> tuple[Hashable, ...]:
        """The part of a key that depends on the request only: what a live subscription can
        compute once instead of for every event."""
        names = self._names_below_root(operation, fragments)
        used = json.dumps({n: variables.get(n) for n in sorted(names)}, default=str)
        return (id(operation), used, role)

    def key_of(
        self, payload: object, request_key: tuple[Hashable, ...]
    ) -> tuple[Hashable, ...] | None:
        if self._shared.get(id(payload)) is not payload:
            return None
        return (id(payload), *request_key)

    def get(self, key: tuple[Hashable, ...], *, count_miss: bool = True) -> Any:
        entry = self._results.get(key)
        if entry is None:
            self.misses += count_miss  # not when the caller goes on to execute (and count) it
            return None
        self.hits += 1
        return entry[2]

    def put(
        self, key: tuple[Hashable, ...], payload: object, operation: object, value: Any
    ) -> None:
        self._results.put(key, (payload, operation, value))

    def json(self, data: object) -> str:
        """``data`` as JSON, encoded once however many subscribers send the same result."""
        entry = self._json.get(id(data))
        if entry is not None and entry[0] is data:
            return entry[1]
        text = json.dumps(data, separators=(",", ":"))
        self._json.put(id(data), (data, text))
        return text

    def next_frame(self, operation_id: str, data: object) -> bytes:
        """The WebSocket frame of the `next` message carrying ``data`` to ``operation_id``,
        built once for every subscriber that sends it under the same id (pages all use the
        same ids): JSON, message and frame header are then written as they are."""
        key = (id(data), operation_id)
        entry = self._frames.get(key)
        if entry is not None and entry[0] is data:
            return entry[1]
        text = (
            f'{{"id":{json.dumps(operation_id)},"type":"next","payload":{{"data":'
            f"{self.json(data)}}}}}"
        )
        frame = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
        self._frames.put(key, (data, frame))
        return frame

    def _names_below_root(
        self, operation: OperationDefinitionNode, fragments: Iterable[Node]
    ) -> set[str]:
        """Variables read below the subscription field (its own arguments, like userIds,
        only choose the stream and do not change a result), or in any fragment."""
        entry = self._variables.get(id(operation))
        if entry is not None and entry[0] is operation:
            return entry[1]
        visitor = _VariableNames()
        for selection in operation.selection_set.selections:
            selection_set = getattr(selection, "selection_set", None)
            if selection_set is not None:
                visit(selection_set, visitor)
            for directive in getattr(selection, "directives", None) or ():
                visit(directive, visitor)
            if not hasattr(selection, "arguments"):  # a fragment spread: be conservative
                visit(selection, visitor)
        for fragment in fragments:
            visit(fragment, visitor)
        names = visitor.names
        self._variables.put(id(operation), (operation, names))
        return names
