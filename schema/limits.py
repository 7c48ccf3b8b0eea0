"""What one GraphQL document may ask for, checked before anything runs: its size in bytes, its
tokens, its estimated cost (GitHub's node count), its aliases and the directives on each field.

One implementation for every path: Strawberry's (schema/document_cache.py) and the live
subscriptions' own parse (subscriptions/live.py) both call parse_document() and
validation_rules()."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from graphql import (
    BREAK,
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    VariableNode,
    get_named_type,
    is_interface_type,
    is_object_type,
    parse,
)

from app.reads.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
PAGE_ARGUMENTS = ("first", "last")


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_cost: int = 5000  # 0: no cost limit
    max_aliases: int = 100
    max_directives_per_field: int = 4
    max_document_bytes: int = 32 * 1024
    max_tokens: int = 5000
    max_depth: int = 12


def too_complex(message: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": QUERY_TOO_COMPLEX, **extensions})


def parse_document(query: str, limits: DocumentLimits) -> DocumentNode:
    """The parsed document; a GraphQLError for one over the size or token limit (checked on
    the text first, so an oversized document is never parsed)."""
    size = len(query.encode("utf-8", "surrogatepass"))
    if size > limits.max_document_bytes:
        raise too_complex(
            f"The document is {size} bytes; at most {limits.max_document_bytes} are accepted.",
            limit=limits.max_document_bytes,
        )
    return parse(query, max_tokens=limits.max_tokens)


def _page_size(node: FieldNode) -> int:
    """first/last as the resolver will take it; a variable counts as the largest page (the
    estimate is cached with the document, whatever the variables of a request)."""
    sizes = []
    for argument in node.arguments or ():
        if argument.name.value not in PAGE_ARGUMENTS:
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            sizes.append(max(0, int(value.value)))
        elif isinstance(value, VariableNode):
            sizes.append(MAX_PAGE_SIZE)
    return max(sizes) if sizes else DEFAULT_PAGE_SIZE


def _is_connection(field: GraphQLField) -> bool:
    return any(name in field.args for name in PAGE_ARGUMENTS)


class CostEstimator:
    """GitHub's node count: each connection costs the product of the page sizes along its
    path (itself included), summed over every field and alias, fragments expanded; any other
    root field costs 1. Costs are linear in the parents' page sizes, so a fragment's cost is
    computed once per type whatever the number of its spreads."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._fragment_costs: dict[tuple[str, bool], int] = {}
        self._visiting: set[str] = set()

    def operation_cost(self, operation: OperationDefinitionNode) -> int:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return 0
        return self._selections(operation.selection_set, root, top=True)

    def _selections(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType, *, top: bool
    ) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, top=top)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self._selections(selection.selection_set, inner or parent, top=top)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._spread(selection.name.value, parent, top=top)
        return total

    def _spread(self, name: str, parent: GraphQLNamedType, *, top: bool) -> int:
        fragment = self.fragments.get(name)
        if fragment is None or name in self._visiting:  # unknown or a cycle: validation says so
            return 0
        key = (name, top)
        if key not in self._fragment_costs:
            inner = self.schema.get_type(fragment.type_condition.name.value) or parent
            self._visiting.add(name)
            try:
                self._fragment_costs[key] = self._selections(fragment.selection_set, inner, top=top)
            finally:
                self._visiting.discard(name)
        return self._fragment_costs[key]

    def _field(self, node: FieldNode, parent: GraphQLNamedType, *, top: bool) -> int:
        if not (is_object_type(parent) or is_interface_type(parent)):
            return 0
        field = parent.fields.get(node.name.value)  # type: ignore[attr-defined]
        if field is None:
            return 0  # unknown (validation reports it) or __typename / introspection
        child = get_named_type(field.type)
        below = self._selections(node.selection_set, child, top=False)
        if _is_connection(field):
            size = _page_size(node)
            return size + size * below
        if top and node.selection_set is not None:
            return 1 + below
        return below


def query_cost(schema: GraphQLSchema, document: DocumentNode) -> int:
    """The document's cost: that of its most expensive operation (only one of them runs)."""
    estimator = CostEstimator(schema, document)
    return max(
        (
            estimator.operation_cost(d)
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
        ),
        default=0,
    )


def count_aliases(document: DocumentNode) -> int:
    count = 0
    stack: list[Any] = list(document.definitions)
    while stack:
        node = stack.pop()
        if isinstance(node, FieldNode) and node.alias is not None:
            count += 1
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)
    return count


def _fields(document: DocumentNode) -> Iterable[FieldNode]:
    stack: list[Any] = list(document.definitions)
    while stack:
        node = stack.pop()
        if isinstance(node, FieldNode):
            yield node
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)


def document_errors(
    schema: GraphQLSchema, document: DocumentNode, limits: DocumentLimits
) -> list[GraphQLError]:
    """The limits a parsed document breaks (empty: none)."""
    if limits.max_cost:
        cost = query_cost(schema, document)
        if cost > limits.max_cost:
            return [
                too_complex(
                    f"The query's estimated cost is {cost}; the limit is {limits.max_cost}.",
                    cost=cost,
                    limit=limits.max_cost,
                )
            ]
    aliases = count_aliases(document)
    if aliases > limits.max_aliases:
        return [
            too_complex(
                f"The document has {aliases} aliases; at most {limits.max_aliases} are accepted.",
                limit=limits.max_aliases,
            )
        ]
    for field in _fields(document):
        if len(field.directives or ()) > limits.max_directives_per_field:
            return [
                GraphQLError(
                    f"At most {limits.max_directives_per_field} directives per field.",
                    nodes=[field],
                    extensions={
                        "code": QUERY_TOO_COMPLEX,
                        "limit": limits.max_directives_per_field,
                    },
                )
            ]
    return []


def validation_rules(limits: DocumentLimits) -> tuple[type[ASTValidationRule], ...]:
    """A graphql-core validation rule that reports document_errors()."""

    class DocumentLimitsRule(ASTValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)

        def enter_document(self, node: DocumentNode, *_args: Any) -> Any:
            for error in document_errors(self.context.schema, node, limits):
                self.report_error(error)
            return BREAK

    return (DocumentLimitsRule,)


__all__ = [
    "QUERY_TOO_COMPLEX",
    "DocumentLimits",
    "document_errors",
    "parse_document",
    "query_cost",
    "validation_rules",
]
