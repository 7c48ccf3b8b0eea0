"""The same generated operation with its argument values moved into variables: the server then
coerces JSON values (another code path than literals), and JSON can carry what a document
cannot (lone surrogates, floats where an Int goes, null inside a list, unknown input fields)."""

from __future__ import annotations

from random import Random
from typing import Any

import graphql
from graphql import (
    ArgumentNode,
    NameNode,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    parse_type,
    print_ast,
    value_from_ast_untyped,
    visit,
)

# Values that only JSON variables can bring: each replaces a leaf now and then.
ODD_STRINGS = ("\ud800", "a\udfffb", "\x00", "\u0000\u0000" * 50)
ODD_NUMBERS = (2.0, 0.5, -0.0, 1e308, 2**63, -(2**31) - 1)


class _Lift(Visitor):
    def __init__(self, info: TypeInfo) -> None:
        super().__init__()
        self.info = info
        self.definitions: list[VariableDefinitionNode] = []
        self.values: dict[str, Any] = {}

    def enter_argument(self, node: ArgumentNode, *_: Any) -> ArgumentNode | None:
        input_type = self.info.get_input_type()
        if input_type is None or isinstance(node.value, VariableNode):
            return None
        name = f"v{len(self.definitions)}"
        self.definitions.append(
            VariableDefinitionNode(
                variable=VariableNode(name=NameNode(value=name)),
                type=parse_type(str(input_type)),
                directives=(),
            )
        )
        self.values[name] = value_from_ast_untyped(node.value)
        return ArgumentNode(name=node.name, value=VariableNode(name=NameNode(value=name)))


def as_variables(
    schema: graphql.GraphQLSchema, document: str, random: Random
) -> tuple[str, dict[str, Any]]:
    """(document, variables): every argument of `document` passed as a variable; in half of
    the documents some leaves of the values are swapped for one of the odd values above."""
    info = TypeInfo(schema)
    lift = _Lift(info)
    tree = visit(graphql.parse(document), TypeInfoVisitor(info, lift))
    operation = next(d for d in tree.definitions if isinstance(d, OperationDefinitionNode))
    lifted = OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=tuple(lift.definitions),
        directives=operation.directives,
        selection_set=operation.selection_set,
    )
    rate = random.choice((0.0, 0.0, 0.1, 0.3))
    values = {name: _oddly(value, random, rate) for name, value in lift.values.items()}
    return print_ast(lifted), values


def _oddly(value: Any, random: Random, rate: float) -> Any:
    if isinstance(value, list):
        items = [_oddly(v, random, rate) for v in value]
        return [*items, None] if random.random() < rate else items
    if isinstance(value, dict):
        fields = {k: _oddly(v, random, rate) for k, v in value.items()}
        return {**fields, "unknownField": 1} if random.random() < rate / 3 else fields
    if random.random() >= rate:
        return value
    if isinstance(value, str):
        return value + random.choice(ODD_STRINGS)
    if isinstance(value, bool) or value is None:
        return random.choice((*ODD_STRINGS, *ODD_NUMBERS, [value], {}))
    if isinstance(value, int):
        return random.choice(ODD_NUMBERS)
    return value
