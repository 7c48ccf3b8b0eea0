"""Object types. Thin: built from app views; fields that need more delegate to resolvers/."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import lru_cache, partial
from typing import Any, TypeVar

import strawberry

from app.admin.token_admin import TokenView
from app.domain.ids import encode_id
from app.domain.timeutil import from_micros, now_micros
from app.domain.views import (
    FailedItemView,
    MetricsView,
    PolicyView,
    RunView,
    UserView,
    public_version,
)
from app.reads.pagination import PageArgs
from app.web.context import Context
from resolvers import queries
from schema.enums import Role, RunKind, RunState, SyncService, SyncStatus
from schema.scalars import BigInt, DateTime

Info = strawberry.Info[Context, None]
T = TypeVar("T")


def _time(micros: int | None) -> datetime | None:
    return from_micros(micros) if micros is not None else None


@strawberry.interface(description="An object with a global id; `node(id:)` finds it.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id.")


@strawberry.type(description="The page info of a connection (Relay).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


def page_info(items: list[tuple[str, object]], has_next: bool, has_previous: bool) -> PageInfo:
    return PageInfo(
        has_next_page=has_next,
        has_previous_page=has_previous,
        start_cursor=items[0][0] if items else None,
        end_cursor=items[-1][0] if items else None,
    )


def connection_of(
    kind: Callable[..., T],
    edge: Callable[..., object],
    node_of: Callable[[Any], object],
    page: Any,
    total: int,
) -> T:
    """A connection from a page of (cursor, view) pairs: its edges, pageInfo and totalCount."""
    return kind(
        edges=[edge(cursor=c, node=node_of(v)) for c, v in page.items],
        page_info=page_info(page.items, page.has_next, page.has_previous),
        total_count=total,
    )


@strawberry.type(description="The four metric cards of the Sync Status page, and more.")
class SyncMetrics:
    users_with_active_policy: int = strawberry.field(
        description="Users assigned to a policy that is active."
    )
    changes_last_24h: BigInt = strawberry.field(
        name="changesLast24h",
        description="Changes processed across all users in the 24 hours before asOf.",
    )
    syncs_in_progress: int = strawberry.field(description="Runs in state RUNNING.")
    failed_syncs: int = strawberry.field(
        description="Users whose most recent finished run FAILED and that have no run running."
    )
    total_users: int = strawberry.field(description="All sync users of the tenant.")
    as_of: DateTime = strawberry.field(description="When these figures were read.")

    @classmethod
    def of(cls, view: MetricsView) -> SyncMetrics:
        return cls(
            users_with_active_policy=view.users_with_active_policy,
            changes_last_24h=view.changes_last_24h,
            syncs_in_progress=view.syncs_in_progress,
            failed_syncs=view.failed_syncs,
            total_users=view.total_users,
            as_of=from_micros(view.as_of),
        )


@strawberry.type(description="A sync policy: which services, how often, active or not.")
class Policy(Node):
    name: str
    description: str | None
    active: bool
    sync_interval_minutes: int = strawberry.field(
        description="A delta sync is due this long after the last one started."
    )
    services: list[SyncService]
    user_count: int = strawberry.field(description="Users assigned to this policy.")
    created_at: DateTime
    updated_at: DateTime

    @classmethod
    def of(cls, view: PolicyView) -> Policy:
        return cls(
            id=strawberry.ID(encode_id("Policy", view.id)),
            name=view.name,
            description=view.description,
            active=view.active,
            sync_interval_minutes=view.sync_interval_minutes,
            services=[SyncService(s) for s in view.services],
            user_count=view.user_count,
            created_at=from_micros(view.created_at),
            updated_at=from_micros(view.updated_at),
        )


PolicyNodes = Callable[[PolicyView], Policy]


def policy_nodes() -> PolicyNodes:
    """Rows of a page share a few policies: each (immutable) Policy object is built once per
    view, in a cache that the schema serving them keeps (SyncStatusSchema.policy_nodes)."""
    return lru_cache(maxsize=1024)(Policy.of)


def _policy_node(info: Info, view: PolicyView | None) -> Policy | None:
    nodes: PolicyNodes = info.schema.policy_nodes  # type: ignore[attr-defined]
    return nodes(view) if view is not None else None


@strawberry.type(description="A problem with one item of a run (a message, folder, event...).")
class FailedItem:
    item_id: str
    item_type: str
    error_code: str
    error_message: str
    failed_at: DateTime

    @classmethod
    def of(cls, view: FailedItemView) -> FailedItem:
        return cls(
            item_id=view.item_id,
            item_type=view.item_type,
            error_code=view.error_code,
            error_message=view.error_message,
            failed_at=from_micros(view.failed_at),
        )


@strawberry.type
class FailedItemEdge:
    cursor: str
    node: FailedItem


@strawberry.type
class FailedItemConnection:
    edges: list[FailedItemEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Exact.")


@strawberry.type(description="One sync run of one user and service.")
class SyncRun(Node):
    kind: RunKind
    service: SyncService
    state: RunState
    started_at: DateTime
    finished_at: DateTime | None
    items_total: int | None = strawberry.field(description="Null while the worker does not know.")
    items_processed: int
    items_failed: int
    changes: int = strawberry.field(description="Changes applied by this run.")
    error_code: str | None = strawberry.field(description="Set when the run FAILED.")
    error_message: str | None
    view: strawberry.Private[RunView]

    @classmethod
    def of(cls, view: RunView) -> SyncRun:
        return cls(
            id=strawberry.ID(encode_id("SyncRun", view.id)),
            kind=RunKind(view.kind),
            service=SyncService(view.service),
            state=RunState(view.state),
            started_at=from_micros(view.started_at),
            finished_at=_time(view.finished_at),
            items_total=view.items_total,
            items_processed=view.items_processed,
            items_failed=view.items_failed,
            changes=view.changes,
            error_code=view.error_code,
            error_message=view.error_message,
            view=view,
        )

    @strawberry.field(description="finishedAt - startedAt; running: the time so far.")
    def duration_seconds(self) -> float:
        end = self.view.finished_at if self.view.finished_at is not None else now_micros()
        return max(0, end - self.view.started_at) / 1_000_000

    @strawberry.field(description="itemsProcessed / itemsTotal in 0..1; null without a total.")
    def progress(self) -> float | None:
        total = self.view.items_total
        if total is None:
            return None
        if total == 0:
            return 1.0
        return min(1.0, self.view.items_processed / total)

    @strawberry.field
    async def user(self, info: Info) -> SyncUser:
        view = await info.context.loaders.user.load(self.view.user_id)
        assert view is not None  # a run's user exists in the run's tenant
        return SyncUser.of(view)

    @strawberry.field
    async def failed_items(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> FailedItemConnection:
        page, total = await queries.failed_items(
            info.context, self.view.id, PageArgs(first=first, after=after)
        )
        return connection_of(FailedItemConnection, FailedItemEdge, FailedItem.of, page, total)


@strawberry.type
class SyncRunEdge:
    cursor: str
    node: SyncRun


@strawberry.type
class SyncRunConnection:
    edges: list[SyncRunEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Exact.")


@strawberry.type(description="A user whose mailbox is synced, with its current sync state.")
class SyncUser(Node):
    email: str = strawberry.field(description="The source mailbox (Microsoft 365).")
    destination_email: str = strawberry.field(description="Where it syncs to (Google Workspace).")
    status: SyncStatus
    latest_sync_at: DateTime | None = strawberry.field(
        description="Start of the most recent run; null if never synced."
    )
    unresolved_failure_count: int = strawberry.field(
        description="FAILED runs since the last run that completed."
    )
    view: strawberry.Private[UserView]

    @classmethod
    def of(cls, view: UserView) -> SyncUser:
        return cls(
            id=strawberry.ID(encode_id("SyncUser", view.id)),
            email=view.email,
            destination_email=view.destination_email,
            status=SyncStatus(view.status),
            latest_sync_at=_time(view.latest_sync_at),
            unresolved_failure_count=view.unresolved_failure_count,
            view=view,
        )

    # Pages preload policy and runs into the view (app.reads.relations); then these resolve
    # synchronously, which costs graphql-core far less than an awaitable per field and row.
    # Otherwise (single users, subscriptions without snapshots) they return a loader awaitable.
    def _with_policy(self, info: Info, then: Callable[[PolicyView | None], T]) -> T | Awaitable[T]:
        view = self.view
        policy_id = view.policy_id
        if policy_id is None or view.policy is not None:
            return then(view.policy if policy_id is not None else None)

        async def load(key: int) -> T:
            return then(await info.context.loaders.policy.load(key))

        return load(policy_id)

    def _with_run(
        self, info: Info, run_id: int | None, run: RunView | None
    ) -> SyncRun | Awaitable[SyncRun | None] | None:
        if run_id is None:
            return None
        if run is not None:
            return SyncRun.of(run)

        async def load() -> SyncRun | None:
            found = await info.context.loaders.run.load(run_id)
            return SyncRun.of(found) if found else None

        return load()

    @strawberry.field
    def policy(self, info: Info) -> Policy | None:
        return self._with_policy(info, partial(_policy_node, info))  # type: ignore[return-value]

    @strawberry.field(description="Grows with every change of this user's sync state.")
    def version(self, info: Info) -> int:
        own = self.view.version
        return self._with_policy(  # type: ignore[return-value]
            info, lambda policy: public_version(own, policy)
        )

    @strawberry.field(description="From the policy's schedule; null without an active policy.")
    def next_scheduled_sync_at(self, info: Info) -> DateTime | None:
        return self._with_policy(info, self._next_sync)  # type: ignore[return-value]

    def _next_sync(self, policy: PolicyView | None) -> datetime | None:
        if policy is None or not policy.active:
            return None
        if self.view.sync_requested or self.view.latest_sync_at is None:
            return from_micros(now_micros())
        return _time(self.view.due_at)

    @strawberry.field(description="The RUNNING run, if any.")
    def current_run(self, info: Info) -> SyncRun | None:
        return self._with_run(  # type: ignore[return-value]
            info, self.view.current_run_id, self.view.current_run
        )

    @strawberry.field
    def last_finished_run(self, info: Info) -> SyncRun | None:
        return self._with_run(  # type: ignore[return-value]
            info, self.view.last_finished_run_id, self.view.last_finished_run
        )

    @strawberry.field(description="The user's runs, newest first.")
    async def runs(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> SyncRunConnection:
        page, total = await queries.user_runs(
            info.context, self.view.id, PageArgs(first, after, last, before)
        )
        return connection_of(SyncRunConnection, SyncRunEdge, SyncRun.of, page, total)


@strawberry.type
class SyncUserEdge:
    cursor: str
    node: SyncUser


@strawberry.type
class PolicyEdge:
    cursor: str
    node: Policy


@strawberry.type
class PolicyConnection:
    edges: list[PolicyEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Exact.")


@strawberry.type(description="A new API token: shown once, only its hash is stored.")
class ApiToken:
    id: strawberry.ID = strawberry.field(description="The id of its ApiTokenInfo.")
    token: str
    role: Role
    name: str
    expires_at: DateTime | None = strawberry.field(description="Null: never expires.")

    @classmethod
    def of(cls, token: str, view: TokenView) -> ApiToken:
        return cls(
            id=strawberry.ID(encode_id("ApiTokenInfo", view.id)),
            token=token,
            role=Role(view.role),
            name=view.name,
            expires_at=_time(view.expires_at),
        )


@strawberry.type(description="An API token as admins see it: never its secret.")
class ApiTokenInfo(Node):
    name: str
    role: Role
    created_at: DateTime
    expires_at: DateTime | None = strawberry.field(description="Null: never expires.")
    last_used_at: DateTime | None = strawberry.field(description="May lag by up to a minute.")
    revoked_at: DateTime | None = strawberry.field(description="Null: not revoked.")

    @classmethod
    def of(cls, view: TokenView) -> ApiTokenInfo:
        return cls(
            id=strawberry.ID(encode_id("ApiTokenInfo", view.id)),
            name=view.name,
            role=Role(view.role),
            created_at=from_micros(view.created_at),
            expires_at=_time(view.expires_at),
            last_used_at=_time(view.last_used_at),
            revoked_at=_time(view.revoked_at),
        )


@strawberry.type
class ApiTokenInfoEdge:
    cursor: str
    node: ApiTokenInfo


@strawberry.type
class ApiTokenInfoConnection:
    edges: list[ApiTokenInfoEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Exact.")


@strawberry.type(description="Who is asking: the token's tenant, name and role.")
class Viewer:
    tenant_name: str
    token_name: str
    role: Role
