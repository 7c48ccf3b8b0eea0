"""The Query type."""

from __future__ import annotations

from collections.abc import Iterable

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionNode,
)

from app.admin.token_admin import TokenView
from app.domain.views import PolicyView, RunView, UserView
from app.reads.pagination import PageArgs
from app.reads.users import UserFilter
from resolvers import admin_queries, queries
from schema.admin_types import (
    AuditEvent,
    AuditEventConnection,
    AuditEventEdge,
    AuditEventFilter,
    Webhook,
    WebhookConnection,
    WebhookEdge,
    admin_node,
)
from schema.enums import Role, SyncUserOrder
from schema.inputs import SyncUserFilter
from schema.library_internals import resolve_info
from schema.triage import FAILURE_REASONS, SYNC_TRENDS
from schema.types import (
    ApiTokenInfo,
    ApiTokenInfoConnection,
    ApiTokenInfoEdge,
    Info,
    Node,
    Policy,
    PolicyConnection,
    PolicyEdge,
    SyncMetrics,
    SyncRun,
    SyncUser,
    SyncUserEdge,
    Viewer,
    connection_of,
    page_info,
)
from schema.types import PageInfo as PageInfoType


@strawberry.type(description="A page of users; totalCount is exact and computed only if asked.")
class SyncUserConnection:
    edges: list[SyncUserEdge]
    page_info: PageInfoType
    filter_: strawberry.Private[UserFilter]
    known_total: strawberry.Private[int | None] = None

    @strawberry.field(description="Exact number of users matching the filter.")
    def total_count(self, info: Info) -> int:
        if self.known_total is not None:  # read with the page (no awaitable to resolve)
            return self.known_total
        return queries.sync_user_count(info.context, self.filter_)  # type: ignore[return-value]


def _names(
    selections: Iterable[SelectionNode],
    fragments: dict[str, FragmentDefinitionNode],
    path: tuple[str, ...],
) -> set[str]:
    names: set[str] = set()
    for selection in selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if not path:
                names.add(name)
            elif name == path[0] and selection.selection_set is not None:
                names |= _names(selection.selection_set.selections, fragments, path[1:])
        elif isinstance(selection, InlineFragmentNode):
            names |= _names(selection.selection_set.selections, fragments, path)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                names |= _names(fragment.selection_set.selections, fragments, path)
    return names


def selected(info: Info, *paths: tuple[str, ...]) -> list[set[str]]:
    """Names of the fields the query selects at each path below this field (fragments
    included), so a resolver reads in one go what its children will need."""
    # Every node of the field: `syncUsers { totalCount } syncUsers { edges { ... } }` is one
    # field of two nodes. Read off graphql-core's nodes: Strawberry's selected_fields converts
    # them anew on each access (~35 us of a page request).
    raw = resolve_info(info)
    selections = [
        s for node in raw.field_nodes if node.selection_set for s in node.selection_set.selections
    ]
    return [_names(selections, raw.fragments, path) for path in paths]


def as_node(view: UserView | RunView | PolicyView | TokenView | None) -> Node | None:
    if isinstance(view, UserView):
        return SyncUser.of(view)
    if isinstance(view, RunView):
        return SyncRun.of(view)
    if isinstance(view, PolicyView):
        return Policy.of(view)
    if isinstance(view, TokenView):
        return ApiTokenInfo.of(view)
    return admin_node(view)


@strawberry.type
class Query:
    @strawberry.field(description="Any object by its global id; null if not found.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return as_node(await queries.node(info.context, id))

    @strawberry.field(description="The metric cards.")
    async def sync_metrics(self, info: Info) -> SyncMetrics:
        return SyncMetrics.of(await queries.sync_metrics(info.context))

    @strawberry.field(description="The tenant's policies, by name.")
    async def policies(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> PolicyConnection:
        page, total = await queries.policies(info.context, PageArgs(first, after, last, before))
        return connection_of(PolicyConnection, PolicyEdge, Policy.of, page, total)

    @strawberry.field(description="Users with their sync state, filtered and keyset-paginated.")
    async def sync_users(
        self,
        info: Info,
        filter: SyncUserFilter | None = None,
        order_by: SyncUserOrder | None = SyncUserOrder.EMAIL_ASC,  # null: the default
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> SyncUserConnection:
        f = filter or SyncUserFilter()
        parsed = queries.user_filter(
            f.email_contains,
            f.latest_sync_from,
            f.latest_sync_to,
            f.policy_id,
            f.status.value if f.status else None,
            f.error_code,
        )
        top, node = selected(info, (), ("edges", "node"))
        runs = frozenset(
            key
            for key, field in (("current", "currentRun"), ("last", "lastFinishedRun"))
            if field in node
        )
        page, total = await queries.sync_users(
            info.context,
            parsed,
            (order_by or SyncUserOrder.EMAIL_ASC).value,
            PageArgs(first, after, last, before),
            with_total="totalCount" in top,
            runs=runs,
            rows="edges" in top or "pageInfo" in top,
        )
        return SyncUserConnection(
            edges=[SyncUserEdge(cursor=c, node=SyncUser.of(v)) for c, v in page.items],
            page_info=page_info(page.items, page.has_next, page.has_previous),  # type: ignore[arg-type]
            filter_=parsed,
            known_total=total,
        )

    @strawberry.field(description="One user; null if not found.")
    async def sync_user(self, info: Info, id: strawberry.ID) -> SyncUser | None:
        view = await queries.sync_user(info.context, id)
        return SyncUser.of(view) if view else None

    @strawberry.field(description="One run; null if not found.")
    async def sync_run(self, info: Info, id: strawberry.ID) -> SyncRun | None:
        view = await queries.sync_run(info.context, id)
        return SyncRun.of(view) if view else None

    failure_reasons = FAILURE_REASONS
    sync_trends = SYNC_TRENDS

    @strawberry.field(description="ADMIN: the audit log, newest first.")
    async def audit_events(
        self,
        info: Info,
        filter: AuditEventFilter | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> AuditEventConnection:
        f = filter or AuditEventFilter()
        parsed = admin_queries.audit_filter(f.action, f.since, f.until)
        page, total = await admin_queries.audit_events(
            info.context, parsed, PageArgs(first, after, last, before)
        )
        return connection_of(AuditEventConnection, AuditEventEdge, AuditEvent.of, page, total)

    @strawberry.field(description="ADMIN: the tenant's webhooks, newest first.")
    async def webhooks(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> WebhookConnection:
        page, total = await admin_queries.webhook_list(info.context, PageArgs(first, after))
        return connection_of(WebhookConnection, WebhookEdge, Webhook.of, page, total)

    @strawberry.field(description="Who is asking: any valid token may ask.")
    async def viewer(self, info: Info) -> Viewer:
        found = await queries.who_am_i(info.context)
        return Viewer(
            tenant_name=found.tenant_name, token_name=found.token_name, role=Role(found.role)
        )

    @strawberry.field(description="ADMIN: the tenant's API tokens, newest first; never secrets.")
    async def api_tokens(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ApiTokenInfoConnection:
        page, total = await queries.api_tokens(info.context, PageArgs(first, after, last, before))
        return connection_of(ApiTokenInfoConnection, ApiTokenInfoEdge, ApiTokenInfo.of, page, total)
