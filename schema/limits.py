"""What one GraphQL document may ask for, checked before anything runs: its size in bytes, its
tokens, its estimated cost (GitHub's node count), its aliases, the directives on each field and
how often one field repeats in a selection set.

One implementation for every path: Strawberry's (schema/document_cache.py) and the live
subscriptions' own parse (subscriptions/live.py) both call parse_document() and
validate_within_limits()."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from graphql import (
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
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_input_object_type,
    is_interface_type,
    is_list_type,
    is_object_type,
    parse,
)

from app.domain.validation import MAX_CLAIMS_PER_CALL, MAX_USERS_PER_CALL
from app.reads.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from schema.library_internals import validate

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
MAX_LIST_LIMIT = MAX_CLAIMS_PER_CALL  # claimDueSyncRuns(limit:)
MAX_LIST_ARGUMENT = MAX_USERS_PER_CALL  # addSyncUsers(users:), assignPolicy(userIds:)
PAGE_ARGUMENTS = ("first", "last")


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    max_cost: int = 5000  # 0: no cost limit
    max_aliases: int = 100
    max_directives_per_field: int = 4
    max_document_bytes: int = 32 * 1024
    max_tokens: int = 5000
    max_depth: int = 12
    # Fields of one response name merged into one selection set, fragments expanded.
    # graphql-core's OverlappingFieldsCanBeMerged compares them pairwise: 300 copies of
    # `viewer { role }` took 420 ms of validation. At 10, the worst document within every
    # limit (100 aliases, each with 10 copies of a field) validates in ~28 ms, at 20 in ~54.
    max_repeated_field: int = 10


# A document whose selections, fragments expanded, exceed this is refused before the walk that
# counts repeats goes further (a "fragment bomb" of aliased spreads doubles at every level).
MAX_EXPANDED_FIELDS = 20_000
# The schema's description (`__schema`) answers with every type, field and argument: ~17 ms of
# CPU and 43 KB each, with nothing of the caller's to read. As a cost it bounds how many one
# document asks for (5 at the default limit) and how many a budget buys (20 a minute).
SCHEMA_INTROSPECTION_COST = 1000
TYPE_INTROSPECTION_COST = 10  # `__type(name:)`: one type
# A connection that may search emails (its filter's emailContains, or a filter or term given as
# a variable, which the estimate cached with the document cannot see): a term new to the
# process is counted by reading every email of the tenant (8-20 ms at 1M users on SQLite, ~110
# on PostgreSQL). Costing 1, 100 aliased searches in one request cost 100 points and seconds
# of database work.
SEARCH_COST = 100
SEARCH_FIELD = "emailContains"


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


# A literal count (first, last, limit) above this counts as this: far over any limit, and a
# literal of thousands of digits is never converted (past 4,300 digits int() raises).
LARGEST_COUNTED = 10**9
# The most `extensions.cost` reports: a JSON number a JavaScript client still reads exactly.
MAX_REPORTED_COST = 2**53 - 1


def _count(value: IntValueNode) -> int:
    """A literal count, at least 0 and at most LARGEST_COUNTED."""
    text = value.value
    if len(text) > len(str(LARGEST_COUNTED)):
        return 0 if text.startswith("-") else LARGEST_COUNTED
    return min(max(0, int(text)), LARGEST_COUNTED)


def _page_size(node: FieldNode) -> int:
    """first/last as the resolver will take it; a variable counts as the largest page (the
    estimate is cached with the document, whatever the variables of a request)."""
    sizes = []
    for argument in node.arguments or ():
        if argument.name.value not in PAGE_ARGUMENTS:
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            sizes.append(_count(value))
        elif isinstance(value, VariableNode):
            sizes.append(MAX_PAGE_SIZE)
    return max(sizes) if sizes else DEFAULT_PAGE_SIZE


def _list_size(field: GraphQLField, node: FieldNode) -> int:
    """The most items a plain list field returns, from its arguments: its `limit` if it has
    one (claimDueSyncRuns' other list, `services`, only filters), else the length of a list it
    is given (addSyncUsers, assignPolicy); a variable counts as the largest each allows; else
    1."""
    sizes = [1]
    limited = "limit" in field.args
    for argument in node.arguments or ():
        value, name = argument.value, argument.name.value
        definition = field.args.get(name)
        if limited:
            if name != "limit":
                continue
            if isinstance(value, IntValueNode):
                sizes.append(_count(value))
            elif isinstance(value, VariableNode):
                sizes.append(MAX_LIST_LIMIT)
        elif isinstance(value, ListValueNode):
            sizes.append(len(value.values))
        elif (
            isinstance(value, VariableNode)
            and definition is not None
            and is_list_type(get_nullable_type(definition.type))
        ):
            sizes.append(MAX_LIST_ARGUMENT)
    return max(sizes)


def _is_connection(field: GraphQLField) -> bool:
    return any(name in field.args for name in PAGE_ARGUMENTS)


def _may_search(field: GraphQLField, node: FieldNode) -> bool:
    """Whether the field's `filter` argument may hold an email search."""
    definition = field.args.get("filter")
    if definition is None:
        return False
    kind = get_named_type(definition.type)
    if not is_input_object_type(kind) or SEARCH_FIELD not in kind.fields:
        return False
    for argument in node.arguments or ():
        if argument.name.value != "filter":
            continue
        value = argument.value
        if isinstance(value, VariableNode):
            return True
        if isinstance(value, ObjectValueNode):
            for item in value.fields:
                if item.name.value == SEARCH_FIELD:
                    return not isinstance(item.value, NullValueNode)
    return False


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
        name = node.name.value
        if top and name == "__schema":
            return SCHEMA_INTROSPECTION_COST
        if top and name == "__type":
            return TYPE_INTROSPECTION_COST
        field = parent.fields.get(name)
        if field is None:
            return 0  # unknown (validation reports it) or __typename
        child = get_named_type(field.type)
        below = self._selections(node.selection_set, child, top=False)
        if below and not _is_connection(field) and is_list_type(get_nullable_type(field.type)):
            # A plain list (claimDueSyncRuns, addSyncUsers, assignPolicy) repeats what is
            # below it for each item: a connection under 100 claimed runs costs 100 times.
            below *= _list_size(field, node)
        if _is_connection(field):
            size = _page_size(node)
            return size + size * below + (SEARCH_COST if _may_search(field, node) else 0)
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
    return sum(field.alias is not None for field in _fields(document))


def _fields(document: DocumentNode) -> Iterable[FieldNode]:
    stack: list[Any] = list(document.definitions)
    while stack:
        node = stack.pop()
        if isinstance(node, FieldNode):
            yield node
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)


def _repeated_field(document: DocumentNode, limit: int) -> GraphQLError | None:
    """The error for a response name selected more than `limit` times in one selection set
    (fields of one name at one response path are merged, fragments expanded, each fragment once
    per selection set as graphql-core does), or for a document too large to count."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    # Each entry: the selection sets merged at one response path.
    pending: list[list[SelectionSetNode]] = [
        [d.selection_set] for d in document.definitions if isinstance(d, OperationDefinitionNode)
    ]
    expanded = 0
    while pending:
        sets = pending.pop()
        counts: dict[str, int] = {}
        below: dict[str, list[SelectionSetNode]] = {}
        spread: set[str] = set()
        while sets:
            for selection in sets.pop().selections:
                if isinstance(selection, FieldNode):
                    expanded += 1
                    key = (selection.alias or selection.name).value
                    counts[key] = count = counts.get(key, 0) + 1
                    if count > limit:
                        return too_complex(
                            f"The field '{key}' is selected more than {limit} times in one "
                            "selection set.",
                            limit=limit,
                        )
                    if selection.selection_set is not None:
                        below.setdefault(key, []).append(selection.selection_set)
                elif isinstance(selection, InlineFragmentNode):
                    sets.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name in fragments and name not in spread:
                        spread.add(name)
                        sets.append(fragments[name].selection_set)
        if expanded > MAX_EXPANDED_FIELDS:
            return too_complex(
                f"The document selects more than {MAX_EXPANDED_FIELDS} fields, fragments expanded.",
                limit=MAX_EXPANDED_FIELDS,
            )
        pending.extend(below.values())
    return None


def document_errors(
    schema: GraphQLSchema, document: DocumentNode, limits: DocumentLimits
) -> list[GraphQLError]:
    """The limits a parsed document breaks (empty: none)."""
    repeated = _repeated_field(document, limits.max_repeated_field)
    if repeated is not None:
        return [repeated]
    if limits.max_cost:
        cost = query_cost(schema, document)
        if cost > limits.max_cost:
            cost = min(cost, MAX_REPORTED_COST)
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


def validate_within_limits(
    schema: GraphQLSchema, document: DocumentNode, limits: DocumentLimits, rules: tuple[Any, ...]
) -> list[GraphQLError]:
    """The document's errors: the limits it breaks, if any; else what validation with `rules`
    (graphql-core's and Strawberry's) finds. The limits go first so that rules whose work grows
    with the square of repeated fields never see a document over them."""
    return document_errors(schema, document, limits) or validate(schema, document, rules)


__all__ = [
    "QUERY_TOO_COMPLEX",
    "DocumentLimits",
    "document_errors",
    "parse_document",
    "query_cost",
    "validate_within_limits",
]
