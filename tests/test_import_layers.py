"""Imports run one way: no module of ours imports itself back through others, and app/ (the service
without GraphQL) reaches schema/, resolvers/ and subscriptions/ only from its composition root."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "schema", "resolvers", "subscriptions")
# The ASGI factory wires GraphQL, subscriptions and the page together: the one place allowed to.
COMPOSITION_ROOT = {"app.web.asgi"}
GRAPHQL_LAYERS = ("schema", "resolvers", "subscriptions")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Modules imported at run time (TYPE_CHECKING blocks are not imports), resolved to ours."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            for child in node.orelse if _is_type_checking(node) else [*node.body, *node.orelse]:
                self.visit(child)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)

    Visitor().visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {_module_name(p): p for p in files if "migrations" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        imported = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_app_reaches_the_graphql_layers_only_from_its_composition_root() -> None:
    graph = import_graph()
    assert graph.keys() >= COMPOSITION_ROOT  # a moved or renamed root must be named here anew
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[0] == "app" and module not in COMPOSITION_ROOT
        for target in targets
        if target.split(".")[0] in GRAPHQL_LAYERS
    )
    assert offenders == []


def test_the_checks_catch_a_cycle_and_a_layer_breach() -> None:
    """The checker itself: a made-up graph with a cycle and a breach is reported."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "b.q": set()}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
    tree = ast.parse("from schema.types import X\nfrom . import sibling\n")
    assert _imports(tree, "app.reads.users", False) >= {
        "schema.types",
        "schema.types.X",
        "app.reads",
        "app.reads.sibling",
    }
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import schema\n")
    assert "schema" not in _imports(typed, "app.x", False)
