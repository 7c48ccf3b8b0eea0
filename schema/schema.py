"""Assembles the schema: Query, Mutation, Subscription, with parser and validation caches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaxTokensLimiter, ParserCache, QueryDepthLimiter, ValidationCache
from strawberry.types import ExecutionContext

from schema.errors import ErrorCodes
from schema.mutation import Mutation
from schema.query import Query
from schema.subscription import Subscription
from schema.types import Policy, SyncRun, SyncUser

PRINTED_SCHEMA = Path(__file__).with_name("schema.graphql")


class SyncStatusSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs unexpected errors in full; expected ones are the client's business.
        return None


def build_schema() -> strawberry.Schema:
    return SyncStatusSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[SyncUser, SyncRun, Policy],
        extensions=[
            ErrorCodes,
            ParserCache(maxsize=1000),
            ValidationCache(maxsize=1000),
            QueryDepthLimiter(max_depth=12),
            MaxTokensLimiter(max_token_count=5000),
        ],
    )


def printed(schema: Any) -> str:
    return str(schema).rstrip() + "\n"
