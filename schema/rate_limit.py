"""Spends each operation's estimated cost from its token's budget (app/auth/rate_limit.py) after
validation and before execution; over the budget nothing runs: RATE_LIMITED with
extensions {retryAfterSeconds} (HTTP 429 with Retry-After, schema/http_status.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from app.auth.rate_limit import RateLimiter
from app.auth.rate_limit import over_budget as over_budget_message
from app.domain.errors import ServiceError
from schema.document_cache import Documents
from schema.library_internals import graphql_core_schema

RATE_LIMITED = "RATE_LIMITED"


def rate_limited(retry_after: int) -> GraphQLError:
    return GraphQLError(
        over_budget_message(retry_after),
        extensions={"code": RATE_LIMITED, "retryAfterSeconds": retry_after},
    )


async def check(context: Any, cost_of: Callable[[], int]) -> GraphQLError | None:
    """The error if the caller is over its budget after spending the document's cost: its
    token's, or for a caller without a (valid) token, the budget of its client address. Such a
    caller can read only the schema's description (every other field fails with
    UNAUTHENTICATED), but that costs CPU all the same (schema/limits.py), so it is not free.
    `cost_of` gives the operation's cost (schema/limits.py); with the limit off
    (SYNCSTATUS_RATE_LIMIT=0) it is not even asked."""
    services = getattr(context, "services", None)
    limiter = getattr(services, "rate_limiter", None)
    if not isinstance(limiter, RateLimiter) or not limiter.limit:
        return None
    cost = cost_of()
    key: int | str
    try:
        key = (context.principal_ or await context.principal()).token_id
    except ServiceError:
        client = getattr(getattr(context, "request", None), "client", None)
        key = f"anonymous:{client.host if client else ''}"
    retry_after = await limiter.spend(key, cost)
    return rate_limited(retry_after) if retry_after is not None else None


class RateLimit(SchemaExtension):
    def __init__(self, documents: Documents) -> None:
        super().__init__()
        self.documents = documents  # the cost is kept with the cached document

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            schema = graphql_core_schema(context.schema)
            error = await check(
                context.context, lambda: self.documents.cost(schema, context.query, document)
            )
            if error is not None:
                raise error
        yield
