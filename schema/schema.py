"""Assembles the schema: Query, Mutation, Subscription, with parser and validation caches."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError, specified_rules
from strawberry.extensions import QueryDepthLimiter
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from schema.admin_types import AuditEvent, Webhook, WebhookDelivery
from schema.document_cache import DocumentCache, Documents
from schema.errors import ErrorCodes
from schema.library_internals import install_direct_resolvers
from schema.limits import DocumentLimits
from schema.mutation import Mutation
from schema.operation_log import OperationLog
from schema.query import Query
from schema.rate_limit import RateLimit
from schema.shared_executor import SharedEventExecutor
from schema.subscription import Subscription
from schema.types import ApiTokenInfo, Policy, SyncRun, SyncUser, policy_nodes

PRINTED_SCHEMA = Path(__file__).with_name("schema.graphql")
# Parsed documents, by text: at most this many, and about this many bytes (one at the token
# limit is ~2 MB).
MAX_CACHED_DOCUMENTS = 1000
MAX_CACHED_BYTES = 64 * 1024 * 1024


class SyncStatusSchema(strawberry.Schema):
    def __init__(
        self, *args: Any, documents: Documents, depth_limiter: QueryDepthLimiter, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy_nodes = policy_nodes()
        # One cache of parsed and validated documents for HTTP and the live subscriptions
        # (subscriptions/live.py), and the rules Strawberry validates an operation with: its
        # specified rules, then the depth limiter's (its only AddValidationRules extension).
        self.documents = documents
        self.operation_rules = (*specified_rules, *depth_limiter.validation_rules)
        # Resolvers without arguments (a page's policy, version, currentRun...) called by
        # graphql-core without Strawberry's per-call wrapper (library_internals).
        self.direct_resolvers = install_direct_resolvers(self)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs unexpected errors in full; expected ones are the client's business.
        return None

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Plain HTTP execution. Subscriptions run over WebSocket (subscriptions/); executed
        here they would end in a server error, so they are refused as a bad request."""
        allowed = set(allowed_operation_types or OperationType)  # Strawberry's default: all
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed - {OperationType.SUBSCRIPTION},
            operation_extensions,
        )


def build_schema(limits: DocumentLimits | None = None) -> SyncStatusSchema:
    limits = limits or DocumentLimits()
    documents = Documents(limits, MAX_CACHED_DOCUMENTS, MAX_CACHED_BYTES)
    depth_limiter = QueryDepthLimiter(max_depth=limits.max_depth)
    return SyncStatusSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[SyncUser, SyncRun, Policy, ApiTokenInfo, AuditEvent, Webhook, WebhookDelivery],
        extensions=[
            OperationLog,  # first: it sees the codes ErrorCodes gives
            ErrorCodes,
            # Size, tokens, cost, aliases, directives, repeats (schema/limits.py), checked
            # before validation, with the caches.
            lambda: DocumentCache(documents),
            depth_limiter,
            lambda: RateLimit(documents),
        ],
        # A subscription event shared by many subscribers is executed once for them all.
        execution_context_class=SharedEventExecutor,
        documents=documents,
        depth_limiter=depth_limiter,
    )


def printed(schema: Any) -> str:
    return str(schema).rstrip() + "\n"
