"""schema/query.py `selected`: the field names a query selects below syncUsers, read off
graphql-core's nodes, through fragments, inline fragments and repeated fields."""

from __future__ import annotations

from graphql import FieldNode, FragmentDefinitionNode, OperationDefinitionNode, parse

from schema.query import _names

DOCUMENT = """
query {
  syncUsers(first: 2) { totalCount ...Conn }
  syncUsers(first: 2) { edges { node { ... on SyncUser { cr: currentRun { id } } } } }
}
fragment Conn on SyncUserConnection { pageInfo { hasNextPage } edges { node { ...U } } }
fragment U on SyncUser { email lastFinishedRun { id } }
"""


def test_names_through_fragments_and_repeated_fields() -> None:
    document = parse(DOCUMENT)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    nodes = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    selections = [s for node in nodes if node.selection_set for s in node.selection_set.selections]
    assert _names(selections, fragments, ()) == {"totalCount", "pageInfo", "edges"}
    # Field names, not aliases; every node and fragment counts.
    assert _names(selections, fragments, ("edges", "node")) == {
        "email",
        "lastFinishedRun",
        "currentRun",
    }
    assert _names(selections, fragments, ("pageInfo",)) == {"hasNextPage"}
    assert _names(selections, {}, ("edges", "node")) == {"currentRun"}  # unknown fragment: none
