"""The schema: the committed printed schema is the live one, and the live schema serves every
type, field, argument and enum value of the public contract (tests/contract.graphql, a copy of
the shared contract) with a compatible type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_client_schema,
    build_schema,
    get_introspection_query,
    is_list_type,
    is_non_null_type,
    lexicographic_sort_schema,
    print_schema,
)
from graphql.pyutils import Undefined
from graphql.type.definition import GraphQLNamedType
from graphql.utilities import value_from_ast_untyped

from schema.schema import PRINTED_SCHEMA, printed
from schema.schema import build_schema as build_live_schema

CONTRACT = Path(__file__).resolve().parent.parent / "contract.graphql"


@pytest.fixture(scope="module")
def live(server: Any) -> GraphQLSchema:
    """The schema the running server serves, from introspection over HTTP."""
    response = httpx.post(
        server.graphql_url,
        json={"query": get_introspection_query(descriptions=True)},
        timeout=30,
    )
    body = response.json()
    assert "errors" not in body, body
    return build_client_schema(body["data"])


def test_the_printed_schema_is_the_schema_in_the_code() -> None:
    assert PRINTED_SCHEMA.read_text() == printed(build_live_schema()), (
        "schema/schema.graphql is stale: regenerate it (see the README)"
    )


def test_the_printed_schema_is_the_served_schema(live: GraphQLSchema) -> None:
    committed = build_schema(PRINTED_SCHEMA.read_text())
    assert print_schema(lexicographic_sort_schema(live)) == print_schema(
        lexicographic_sort_schema(committed)
    )


def _output_ok(live: Any, contract: Any) -> bool:
    """A value of the live type is always a valid value of the contract's type."""
    if is_non_null_type(contract):
        return is_non_null_type(live) and _output_ok(live.of_type, contract.of_type)
    if is_non_null_type(live):
        return _output_ok(live.of_type, contract)
    if is_list_type(contract) or is_list_type(live):
        return (
            is_list_type(contract)
            and is_list_type(live)
            and _output_ok(live.of_type, contract.of_type)
        )
    return bool(live.name == contract.name)


def _input_ok(live: Any, contract: Any) -> bool:
    """Every value the contract allows a client to send is accepted by the live type."""
    return _output_ok(contract, live)


def _default_of(arg: Any) -> Any:
    """An argument's or input field's default as plain data; Undefined when it has none."""
    default = getattr(arg, "default", None)
    if default is None:
        return Undefined
    if default.literal is not None:
        return value_from_ast_untyped(default.literal)
    return default.value


def _defaults(contract_arg: Any, live_arg: Any, where: str) -> list[str]:
    want, got = _default_of(contract_arg), _default_of(live_arg)
    if want is Undefined or want == got:
        return []
    return [f"{where}: default {got!r}, contract says {want!r}"]


def _compare_args(contract_args: dict, live_args: dict, where: str) -> list[str]:
    problems = []
    for name, arg in contract_args.items():
        found = live_args.get(name)
        if found is None:
            problems.append(f"{where}({name}:) is missing")
            continue
        if not _input_ok(found.type, arg.type):
            problems.append(f"{where}({name}:) is {found.type}, contract says {arg.type}")
        problems += _defaults(arg, found, f"{where}({name}:)")
    for name, arg in live_args.items():
        if name not in contract_args and is_non_null_type(arg.type) and _no_default(arg):
            problems.append(f"{where}({name}:) is required but not in the contract")
    return problems


def _no_default(arg: Any) -> bool:
    return _default_of(arg) is Undefined


def _compare_type(contract: GraphQLNamedType, live: GraphQLNamedType | None) -> list[str]:
    name = contract.name
    if live is None:
        return [f"type {name} is missing"]
    if type(live) is not type(contract):
        return [f"{name} is a {type(live).__name__}, contract says {type(contract).__name__}"]
    problems: list[str] = []
    if isinstance(contract, GraphQLObjectType | GraphQLInterfaceType):
        assert isinstance(live, GraphQLObjectType | GraphQLInterfaceType)
        have = {i.name for i in live.interfaces}
        problems += [
            f"{name} does not implement {i.name}" for i in contract.interfaces if i.name not in have
        ]
        for field_name, field in contract.fields.items():
            found = live.fields.get(field_name)
            if found is None:
                problems.append(f"{name}.{field_name} is missing")
                continue
            if not _output_ok(found.type, field.type):
                problems.append(f"{name}.{field_name} is {found.type}, contract says {field.type}")
            problems += _compare_args(field.args, found.args, f"{name}.{field_name}")
    elif isinstance(contract, GraphQLInputObjectType):
        assert isinstance(live, GraphQLInputObjectType)
        problems += _compare_args(contract.fields, live.fields, name)
    elif isinstance(contract, GraphQLEnumType):
        assert isinstance(live, GraphQLEnumType)
        problems += [f"{name}.{v} is missing" for v in contract.values if v not in live.values]
    return problems


def test_the_live_schema_serves_the_contract(live: GraphQLSchema) -> None:
    contract = build_schema(CONTRACT.read_text())
    problems: list[str] = []
    for name, named in contract.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Float", "Boolean", "ID"):
            continue
        problems += _compare_type(named, live.type_map.get(name))
    for root in ("query_type", "mutation_type", "subscription_type"):
        want, got = getattr(contract, root), getattr(live, root)
        assert got is not None and got.name == want.name, root
    assert problems == []


def test_the_contract_copy_is_the_shared_contract() -> None:
    """Where the shared contract is at hand (not in CI's clean clone), the copy matches it."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "contract.graphql"
    if not shared.exists():
        pytest.skip(f"{shared} is not here")
    assert CONTRACT.read_text() == shared.read_text()


def test_the_comparison_catches_an_incompatible_schema() -> None:
    """The checker itself: a schema that drops and narrows things is reported."""
    contract = build_schema(CONTRACT.read_text())
    broken = build_schema(
        CONTRACT.read_text()
        .replace("  LATEST_SYNC_DESC", "")
        .replace("  latestSyncAt: DateTime ", "  latestSyncAt: String ")
        .replace(
            "email: String!               # the user", "email: String               # the user"
        )
        .replace("claimDueSyncRuns(limit: Int! = 10,", "claimDueSyncRuns(limit: Int! = 5,")
    )
    problems = []
    for name, named in contract.type_map.items():
        if not name.startswith("__"):
            problems += _compare_type(named, broken.type_map.get(name))
    assert sorted(problems) == sorted(
        [
            "SyncUserOrder.LATEST_SYNC_DESC is missing",
            "SyncUser.latestSyncAt is String, contract says DateTime",
            "SyncUser.email is String, contract says String!",
            "Mutation.claimDueSyncRuns(limit:): default 5, contract says 10",
        ]
    )
