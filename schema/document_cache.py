"""Parsed and validated documents by query text, bounded in bytes as well as in entries: a
document near the size limit parses to megabytes, so an entry count alone bounds nothing.

One Documents per schema (SyncStatusSchema.documents): DocumentCache is the Strawberry side
(it replaces ParserCache and ValidationCache), subscriptions/live.Documents the live
subscriptions' side, both validating with the schema's operation rules."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from graphql import DocumentNode, GraphQLError, GraphQLSchema, Node, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from schema.library_internals import graphql_core_schema, provided_operation_name
from schema.limits import DocumentLimits, parse_document, query_cost, validate_within_limits

V = TypeVar("V")
BYTES_PER_NODE = 400  # measured: a parsed node with its location and tokens, 300-400 bytes


def document_bytes(query: str, document: DocumentNode | None) -> int:
    """About what the text and its parsed document hold in memory."""
    nodes = 0
    stack: list[Any] = [document] if document is not None else []
    while stack:
        node = stack.pop()
        nodes += 1
        for key in node.keys:
            value = getattr(node, key, None)
            if isinstance(value, Node):
                stack.append(value)
            elif isinstance(value, tuple | list):
                stack.extend(v for v in value if isinstance(v, Node))
    return 2 * len(query) + 100 + BYTES_PER_NODE * nodes


class BoundedCache(Generic[V]):
    """LRU by key, evicting the least recently used until both bounds hold."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: str, value: V, size: int) -> None:
        if size > self.max_bytes:
            return  # would evict everything else: not worth keeping
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (value, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted


@dataclass(slots=True)
class Parsed:
    """One query text: its document (or the error parsing gave) and, once run, what
    validation said with the rules it ran with, and its estimated cost once asked."""

    document: DocumentNode | None
    parse_error: GraphQLError | None = None
    rules: tuple[Any, ...] | None = None
    errors: list[GraphQLError] = field(default_factory=list)
    cost: int | None = None


class Documents:
    """Parses and validates through a BoundedCache; shared by every request of a schema."""

    def __init__(self, limits: DocumentLimits, max_entries: int, max_bytes: int) -> None:
        self.limits = limits
        self.cache: BoundedCache[Parsed] = BoundedCache(max_entries, max_bytes)

    def parsed(self, query: str) -> Parsed:
        found = self.cache.get(query)
        if found is None:
            try:
                found = Parsed(parse_document(query, self.limits))
            except GraphQLError as error:
                # Not kept: an oversized text must not be held either.
                return Parsed(None, error)
            self.cache.put(query, found, document_bytes(query, found.document))
        return found

    def validated(self, schema: Any, query: str, rules: tuple[Any, ...]) -> list[GraphQLError]:
        found = self.parsed(query)
        if found.parse_error is not None or found.document is None:
            return [found.parse_error] if found.parse_error else []
        if found.rules != rules:
            found.errors = validate_within_limits(schema, found.document, self.limits, rules)
            found.rules = rules
        return list(found.errors)

    def cost(self, schema: GraphQLSchema, query: str | None, document: DocumentNode) -> int:
        """The document's estimated cost (schema/limits.py), kept with it while it is cached:
        the rate limit spends it on every request (20-50 us to estimate the page's queries)."""
        found = self.cache.get(query) if query is not None else None
        if found is None or found.document is not document:
            return query_cost(schema, document)
        if found.cost is None:
            found.cost = query_cost(schema, document)
        return found.cost


class DocumentCache(SchemaExtension):
    """Strawberry's parse and validate steps through Documents (and its limits)."""

    def __init__(self, documents: Documents) -> None:
        super().__init__()
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.graphql_document is None:
            found = self.documents.parsed(context.query)
            if found.parse_error is not None:
                raise found.parse_error
            context.graphql_document = found.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.pre_execution_errors is None:
            context.pre_execution_errors = self.documents.validated(
                graphql_core_schema(context.schema), context.query, tuple(context.validation_rules)
            )
            document = context.graphql_document
            if not context.pre_execution_errors and document is not None:
                context.pre_execution_errors = _unnamed_choice(
                    document, provided_operation_name(context)
                )
        yield


def _unnamed_choice(document: DocumentNode, operation_name: str | None) -> list[GraphQLError]:
    """GraphQL's GetOperation: with several operations, the request must name one (Strawberry
    0.341 ran the first)."""
    if operation_name is not None:
        return []
    operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
    if operations < 2:
        return []
    return [
        GraphQLError(
            "Must provide operation name if query contains multiple operations.",
            extensions={"code": "BAD_USER_INPUT"},
        )
    ]
