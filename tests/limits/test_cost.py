"""The cost estimator and the document limits as pure functions of a document."""

from __future__ import annotations

import pytest
from graphql import ASTValidationRule, GraphQLError, get_introspection_query, parse

from schema.document_cache import BoundedCache, Documents, document_bytes
from schema.library_internals import graphql_core_schema
from schema.limits import (
    MAX_EXPANDED_FIELDS,
    SCHEMA_INTROSPECTION_COST,
    SEARCH_COST,
    DocumentLimits,
    document_errors,
    parse_document,
    query_cost,
    validate_within_limits,
)
from schema.schema import build_schema

SCHEMA = graphql_core_schema(build_schema())


def cost(query: str) -> int:
    return query_cost(SCHEMA, parse(query))


def codes(query: str, limits: DocumentLimits | None = None) -> list[dict[str, object]]:
    return [
        e.extensions or {}
        for e in document_errors(SCHEMA, parse(query), limits or DocumentLimits())
    ]


def test_a_connection_costs_its_page_size_and_a_missing_first_its_default() -> None:
    assert cost("{ syncUsers(first: 25) { totalCount } }") == 25
    assert cost("{ syncUsers { totalCount } }") == 10
    assert cost("{ syncUsers(last: 7) { totalCount } }") == 7
    assert cost("{ policies(first: 3) { totalCount } }") == 3


def test_other_root_fields_cost_one_and_leaves_nothing() -> None:
    assert cost("{ syncMetrics { failedSyncs } }") == 1
    assert cost('{ syncUser(id: "x") { id email policy { name } } }') == 1
    assert cost("{ __typename }") == 0


def test_nested_connections_multiply_along_the_path() -> None:
    query = "{ syncUsers(first: 100) { edges { node { runs(first: 20) { totalCount } } } } }"
    assert cost(query) == 100 + 100 * 20
    three = """{ syncUsers(first: 10) { edges { node { runs(first: 5) { edges { node {
      failedItems(first: 4) { totalCount } } } } } } } }"""
    assert cost(three) == 10 + 10 * (5 + 5 * 4)
    assert cost('{ syncUser(id: "x") { runs(first: 30) { totalCount } } }') == 1 + 30


def test_aliases_add_up() -> None:
    aliases = " ".join(f"a{i}: syncUsers(first: 100) {{ totalCount }}" for i in range(150))
    assert cost(f"{{ {aliases} }}") == 15_000


def test_variables_count_as_the_largest_page() -> None:
    assert cost("query($n: Int) { syncUsers(first: $n) { totalCount } }") == 100


def test_a_connection_that_may_search_emails_costs_a_search_more() -> None:
    """A new term is counted over every email of the tenant: 100 aliased searches of one row
    each cost 10,100, not 100, and are refused at the default limit."""
    search = '{ syncUsers(first: 1, filter: {emailContains: "ab"}) { totalCount } }'
    assert cost(search) == 1 + SEARCH_COST
    assert cost("query($f: SyncUserFilter) { syncUsers(first: 1, filter: $f) { id } }") == 101
    term = "query($t: String) { syncUsers(first: 1, filter: {emailContains: $t}) { id } }"
    assert cost(term) == 101
    # No search: no filter, another field of it, or an explicit null.
    assert cost("{ syncUsers(first: 1, filter: {status: FAILED}) { totalCount } }") == 1
    assert cost("{ syncUsers(first: 1, filter: {emailContains: null}) { totalCount } }") == 1
    assert cost("{ policies(first: 3) { totalCount } }") == 3
    searches = " ".join(
        f'a{i}: syncUsers(first: 1, filter: {{emailContains: "t{i}"}}) {{ totalCount }}'
        for i in range(100)
    )
    assert cost("{ " + searches + " }") == 100 * (1 + SEARCH_COST)
    assert [c["code"] for c in codes("{ " + searches + " }")] == ["QUERY_TOO_COMPLEX"]


def test_fragments_are_expanded_once_per_spread() -> None:
    query = """{ a: syncUsers(first: 2) { ...Page } b: syncUsers(first: 3) { ...Page } }
      fragment Page on SyncUserConnection { edges { node { ...Runs } } }
      fragment Runs on SyncUser { runs(first: 10) { totalCount } }"""
    assert cost(query) == (2 + 2 * 10) + (3 + 3 * 10)
    inline = '{ node(id: "x") { ... on SyncUser { runs(first: 40) { totalCount } } } }'
    assert cost(inline) == 1 + 40


def test_fragments_spread_many_times_are_not_exponential_to_estimate() -> None:
    # Each level spreads the one below twice: 2^30 expansions if walked naively.
    levels = [f"fragment F{i} on SyncUser {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30)]
    levels.append("fragment F30 on SyncUser { runs(first: 1) { totalCount } }")
    query = '{ syncUser(id: "x") { ...F0 } } ' + " ".join(levels)
    assert cost(query) == 1 + 2**30


def test_cyclic_fragments_end() -> None:
    query = """{ syncUser(id: "x") { ...A } }
      fragment A on SyncUser { runs(first: 2) { edges { node { user { ...A } } } } }"""
    assert cost(query) == 1 + 2


def test_the_most_expensive_operation_counts() -> None:
    query = """query A { syncUsers(first: 5) { totalCount } }
      query B { policies(first: 50) { totalCount } }"""
    assert cost(query) == 50


def test_over_the_limit_is_query_too_complex_with_cost_and_limit() -> None:
    query = "{ syncUsers(first: 100) { edges { node { runs(first: 100) { totalCount } } } } }"
    assert codes(query) == [{"code": "QUERY_TOO_COMPLEX", "cost": 10_100, "limit": 5000}]
    assert codes(query, DocumentLimits(max_cost=0)) == []  # 0: off
    assert codes(query, DocumentLimits(max_cost=10_100)) == []


def test_aliases_and_directives_are_bounded() -> None:
    many = " ".join(f"a{i}: __typename" for i in range(101))
    assert codes(f"{{ {many} }}") == [{"code": "QUERY_TOO_COMPLEX", "limit": 100}]
    assert codes(f"{{ {' '.join(f'a{i}: __typename' for i in range(100))} }}") == []
    directives = " ".join("@include(if: true)" for _ in range(5))
    assert codes(f"{{ __typename {directives} }}") == [{"code": "QUERY_TOO_COMPLEX", "limit": 4}]


def test_a_document_over_the_size_limit_is_not_parsed() -> None:
    limits = DocumentLimits(max_document_bytes=1000)
    with pytest.raises(GraphQLError) as raised:
        parse_document("{ " + "x" * 2000 + " }", limits)
    assert raised.value.extensions == {"code": "QUERY_TOO_COMPLEX", "limit": 1000}
    parse_document("{ " + "x" * 900 + " }", limits)


def test_caches_are_bounded_in_bytes() -> None:
    cache: BoundedCache[int] = BoundedCache(max_entries=100, max_bytes=1000)
    for i in range(50):
        cache.put(str(i), i, 300)
    assert len(cache) == 3 and cache.bytes == 900
    assert cache.get("49") == 49 and cache.get("0") is None
    cache.put("huge", 1, 5000)  # larger than the whole budget: not kept
    assert cache.get("huge") is None and len(cache) == 3


def test_documents_keep_texts_within_their_byte_budget() -> None:
    documents = Documents(DocumentLimits(), max_entries=1000, max_bytes=2_000_000)
    for i in range(200):
        query = "{ " + " ".join(f"a{i}_{j}: __typename" for j in range(90)) + " }"
        assert documents.validated(SCHEMA, query, ()) == []
    assert documents.cache.bytes <= 2_000_000
    assert len(documents.cache) < 200
    big = "{ " + " ".join("__typename" for _ in range(2000)) + " }"
    assert document_bytes(big, parse(big)) > 400 * 2000


def test_the_cost_is_estimated_once_per_cached_document() -> None:
    """The rate limit asks for every request's cost; a cached document keeps it."""
    documents = Documents(DocumentLimits(), max_entries=10, max_bytes=1_000_000)
    query = "{ syncUsers(first: 50) { edges { node { id runs(first: 20) { totalCount } } } } }"
    found = documents.parsed(query)
    assert found.cost is None and found.document is not None
    assert documents.cost(SCHEMA, query, found.document) == cost(query) == 50 + 50 * 20
    assert found.cost == cost(query)
    found.cost = 7  # what a second request gets: the kept figure, not a new estimate
    assert documents.cost(SCHEMA, query, found.document) == 7
    # Another document of the same text (not the cached one), or no text: estimated anew.
    assert documents.cost(SCHEMA, query, parse(query)) == cost(query)
    assert documents.cost(SCHEMA, None, found.document) == cost(query)


REPEATED = {"code": "QUERY_TOO_COMPLEX", "limit": 10}


def test_a_field_repeated_in_one_selection_set_is_bounded() -> None:
    assert codes("{" + " viewer { role }" * 10 + " }") == []
    assert codes("{" + " viewer { role }" * 11 + " }") == [REPEATED]
    # Merged with its namesakes: 6 + 5 `role` under one response path `viewer.role`.
    assert codes("{ viewer {" + " role" * 6 + " } viewer {" + " role" * 5 + " } }") == [REPEATED]
    # Under different names (aliases, or other parents) they are not merged.
    assert codes("{ a: viewer {" + " role" * 10 + " } b: viewer {" + " role" * 10 + " } }") == []


def test_repeats_count_through_fragments_each_spread_once_per_selection_set() -> None:
    fragments = " ".join(f"fragment F{i} on Query {{ viewer {{ role }} }}" for i in range(11))
    spreads = " ".join(f"...F{i}" for i in range(11))
    assert codes(f"{{ {spreads} }} {fragments}") == [REPEATED]
    # One fragment spread many times is merged once, as graphql-core's validation does.
    assert codes("{" + " ...F0" * 30 + " ... on Query { viewer { role } } } " + fragments) == []


def test_a_fragment_bomb_is_refused_before_it_is_walked() -> None:
    # Each fragment selects the previous one twice under two aliases: 2^30 fields expanded.
    below = "currentRun {{ user {{ ...F{} }} }}"
    levels = " ".join(
        f"fragment F{i} on SyncUser {{ a: {below.format(i - 1)} b: {below.format(i - 1)} }}"
        for i in range(1, 31)
    )
    query = f'{{ syncUser(id: "x") {{ ...F30 }} }} fragment F0 on SyncUser {{ id }} {levels}'
    limit = {"code": "QUERY_TOO_COMPLEX", "limit": MAX_EXPANDED_FIELDS}
    assert codes(query, DocumentLimits(max_cost=0)) == [limit]


def test_the_schema_description_costs_what_it_takes_to_answer() -> None:
    assert cost("{ __schema { queryType { name } } }") == SCHEMA_INTROSPECTION_COST
    assert cost(get_introspection_query()) == SCHEMA_INTROSPECTION_COST
    assert cost('{ __type(name: "SyncUser") { name } }') == 10
    five = "{" + " ".join(f"s{i}: __schema {{ queryType {{ name }} }}" for i in range(5)) + " }"
    assert codes(five) == []
    six = "{" + " ".join(f"s{i}: __schema {{ queryType {{ name }} }}" for i in range(6)) + " }"
    assert codes(six) == [{"code": "QUERY_TOO_COMPLEX", "cost": 6000, "limit": 5000}]
    # GraphiQL's own introspection stays well within every limit.
    assert codes(get_introspection_query()) == []


class Exploding(ASTValidationRule):
    def enter_document(self, *_args: object) -> None:
        raise AssertionError("validation ran on a document over the limits")


def test_limits_are_checked_before_validation_rules_run() -> None:
    limits = DocumentLimits()
    over = parse("{" + " viewer { role }" * 1200 + " }", max_tokens=10_000)
    errors = validate_within_limits(SCHEMA, over, limits, (Exploding,))
    assert [e.extensions for e in errors] == [REPEATED]
    with pytest.raises(AssertionError, match="validation ran"):
        validate_within_limits(SCHEMA, parse("{ viewer { role } }"), limits, (Exploding,))


RUNS_BELOW = "runs(first: 49) { edges { node { failedItems(first: 100) { totalCount } } } }"


def test_a_plain_list_repeats_the_cost_below_it_for_each_item() -> None:
    # 49 runs, each with a page of 100 failed items: 49 + 49 * 100 = 4,949 below each item.
    claim = f"mutation {{ claimDueSyncRuns(limit: 100) {{ user {{ {RUNS_BELOW} }} }} }}"
    assert cost(claim) == 1 + 100 * 4949  # 4,950 before: as if one run were claimed
    assert cost(claim.replace("limit: 100", "limit: 2")) == 1 + 2 * 4949
    as_variable = claim.replace("limit: 100", "limit: $n").replace("mutation", "mutation($n: Int)")
    assert cost(as_variable) == 1 + 100 * 4949
    # Its other list argument only filters the runs.
    filtered = claim.replace("limit: 100", "limit: 2, services: [MAIL, DRIVE, CALENDAR]")
    assert cost(filtered) == 1 + 2 * 4949
    assign = f'mutation {{ assignPolicy(userIds: ["a", "b", "c"]) {{ {RUNS_BELOW} }} }}'
    assert cost(assign) == 1 + 3 * 4949
    many = "mutation($ids: [ID!]!) { assignPolicy(userIds: $ids) { " + RUNS_BELOW + " } }"
    assert cost(many) == 1 + 1000 * 4949
    # Leaves below a list cost nothing more: adding 1,000 users costs what it did.
    assert cost("mutation { claimDueSyncRuns(limit: 100) { id state } }") == 1
