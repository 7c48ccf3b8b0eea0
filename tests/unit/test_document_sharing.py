"""One cache of parsed and validated documents per schema, for HTTP operations and the live
subscriptions alike (SyncStatusSchema.documents): validated once with one set of rules, the
estimated cost kept with the document."""

from __future__ import annotations

from schema.schema import build_schema
from subscriptions.live import Documents

SUBSCRIPTION = "subscription { syncMetricsUpdated { totalUsers } }"
QUERY = "{ __typename }"


async def test_strawberry_validates_with_the_schemas_operation_rules() -> None:
    """An HTTP operation leaves its validation in the cache under the very rules the live
    subscriptions use: a document both ask for is validated once, not once per rule set."""
    schema = build_schema()
    result = await schema.execute(QUERY)
    assert result.errors is None
    entry = schema.documents.cache.get(QUERY)
    assert entry is not None and entry.rules == schema.operation_rules


def test_live_subscriptions_read_through_the_schemas_cache() -> None:
    schema = build_schema()
    live = Documents(schema)
    document = live.valid(SUBSCRIPTION)
    assert document is not None
    assert schema.documents.parsed(SUBSCRIPTION).document is document
    assert live.valid(SUBSCRIPTION) is document  # parsed and validated once
    cost = live.cost(SUBSCRIPTION, document)
    assert cost > 0 and schema.documents.cache.get(SUBSCRIPTION).cost == cost  # type: ignore[union-attr]


def test_an_invalid_document_is_left_to_the_usual_path() -> None:
    live = Documents(build_schema())
    assert live.valid("subscription { noSuchField }") is None
    assert live.valid("subscription {") is None
    assert live.valid(_nested(4)) is not None  # within the depth limit (12)
    assert live.valid(_nested(7)) is None  # the depth limit applies, as over HTTP


def _nested(pairs: int) -> str:
    inner = "currentRun { user { " * pairs + "id" + " } }" * pairs
    return "subscription { syncUserUpdated { " + inner + " } }"
