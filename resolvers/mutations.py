"""Mutation resolvers: check the role, parse ids, run one unit of work through app/. The run
lifecycle's unit of work is one synchronous function (load, then change) that app.unit_of_work
runs as one transaction; administration's is an ORM session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Connection

from app import lifecycle, policies, token_admin, user_admin
from app.auth import issue_token
from app.context import Context
from app.events import Event, TokenRevoked
from app.ids import decode_id
from app.token_admin import TokenView, check_expiry
from app.token_revocations import forget_here
from app.unit_of_work import Change, unit_of_work, write
from app.validation import FailedItemInput, name
from app.views import PolicyView, RunView, UserView

T = TypeVar("T")


async def _tenant(ctx: Context, role: str) -> int:
    principal = await ctx.principal()
    principal.require(role)
    return principal.tenant_id


def _uow(ctx: Context):  # type: ignore[no-untyped-def]
    return unit_of_work(ctx.services.db, ctx.services.publisher)


async def _write(ctx: Context, change: Change[T]) -> T:
    return await write(ctx.services.db, ctx.services.publisher, change)


async def claim_due_sync_runs(
    ctx: Context, limit: int, services: Sequence[str] | None
) -> list[RunView]:
    tenant_id = await _tenant(ctx, "WORKER")

    def claim(conn: Connection, now: int) -> tuple[list[RunView], list[Event]]:
        return lifecycle.claim_due_runs(conn, tenant_id, now, limit, services)

    return await _write(ctx, claim)


async def start_sync_run(
    ctx: Context, user_id: str, kind: str | None, service: str, items_total: int | None
) -> RunView:
    tenant_id = await _tenant(ctx, "WORKER")
    row_id = decode_id(user_id, "SyncUser")

    def start(conn: Connection, now: int) -> tuple[RunView, list[Event]]:
        user = lifecycle.load_user(conn, tenant_id, row_id)
        run, event = lifecycle.start_run(conn, user, now, kind, service, items_total)
        return run, [event]

    return await _write(ctx, start)


async def report_sync_progress(
    ctx: Context,
    run_id: str,
    items_processed: int,
    changes: int,
    items_total: int | None,
    failed_items: list[FailedItemInput] | None,
) -> RunView:
    tenant_id = await _tenant(ctx, "WORKER")
    row_id = decode_id(run_id, "SyncRun")

    def report(conn: Connection, now: int) -> tuple[RunView, list[Event]]:
        run, user = lifecycle.load_run(conn, tenant_id, row_id)
        return lifecycle.report_progress(
            conn, run, user, now, items_processed, changes, items_total, failed_items
        )

    return await _write(ctx, report)


async def finish_sync_run(
    ctx: Context,
    run_id: str,
    error_code: str | None,
    error_message: str | None,
    failed_items: list[FailedItemInput] | None,
) -> RunView:
    tenant_id = await _tenant(ctx, "WORKER")
    row_id = decode_id(run_id, "SyncRun")

    def finish(conn: Connection, now: int) -> tuple[RunView, list[Event]]:
        run, user = lifecycle.load_run(conn, tenant_id, row_id)
        finished, event = lifecycle.finish_run(
            conn, run, user, now, error_code, error_message, failed_items
        )
        return finished, [event]

    return await _write(ctx, finish)


async def request_sync(ctx: Context, user_id: str) -> UserView:
    tenant_id = await _tenant(ctx, "OPERATOR")
    row_id = decode_id(user_id, "SyncUser")

    def request(conn: Connection, now: int) -> tuple[UserView, list[Event]]:
        user = lifecycle.load_user(conn, tenant_id, row_id)
        event = lifecycle.request_sync(conn, user, now)
        return event.user, [event]

    return await _write(ctx, request)


async def create_policy(ctx: Context, data: policies.PolicyInput) -> PolicyView:
    tenant_id = await _tenant(ctx, "ADMIN")
    async with _uow(ctx) as work:
        policy, event = await policies.create_policy(work.session, tenant_id, work.now, data)
        work.events.append(event)
        return PolicyView.of(policy)


async def update_policy(ctx: Context, policy_id: str, data: policies.PolicyInput) -> PolicyView:
    tenant_id = await _tenant(ctx, "ADMIN")
    row_id = decode_id(policy_id, "Policy")
    async with _uow(ctx) as work:
        policy, events = await policies.update_policy(
            work.session, tenant_id, row_id, work.now, data
        )
        work.events.extend(events)
        return PolicyView.of(policy)


async def set_policy_active(ctx: Context, policy_id: str, active: bool) -> PolicyView:
    tenant_id = await _tenant(ctx, "ADMIN")
    row_id = decode_id(policy_id, "Policy")
    async with _uow(ctx) as work:
        policy, events = await policies.set_policy_active(
            work.session, tenant_id, row_id, work.now, active
        )
        work.events.extend(events)
        return PolicyView.of(policy)


async def add_sync_users(
    ctx: Context, users: Sequence[tuple[str, str, str | None]]
) -> list[UserView]:
    tenant_id = await _tenant(ctx, "ADMIN")
    parsed = [
        (email, destination, decode_id(policy_id, "Policy") if policy_id is not None else None)
        for email, destination, policy_id in users
    ]
    async with _uow(ctx) as work:
        _, events = await user_admin.add_users(work.session, tenant_id, work.now, parsed)
        work.events.extend(events)
        return [event.user for event in events if hasattr(event, "user")]


async def assign_policy(
    ctx: Context, user_ids: Sequence[str], policy_id: str | None
) -> list[UserView]:
    tenant_id = await _tenant(ctx, "ADMIN")
    ids = [decode_id(user_id, "SyncUser") for user_id in user_ids]
    # Only null unassigns: "" is a malformed id, not a missing one.
    policy_row_id = decode_id(policy_id, "Policy") if policy_id is not None else None
    async with _uow(ctx) as work:
        rows, events = await user_admin.assign_policy(
            work.session, tenant_id, work.now, ids, policy_row_id
        )
        work.events.extend(events)
        return [UserView.of(row) for row in rows]


async def create_api_token(
    ctx: Context, token_name: str, role: str, expires_at: int | None = None
) -> tuple[str, TokenView]:
    tenant_id = await _tenant(ctx, "ADMIN")
    token_name = name(token_name)
    async with _uow(ctx) as work:
        expiry = check_expiry(expires_at, work.now)
        token, row = await issue_token(work.session, tenant_id, token_name, role, expiry)
        view = TokenView.of(row)
    return token, view


async def revoke_api_token(ctx: Context, token_id: str) -> TokenView:
    tenant_id = await _tenant(ctx, "ADMIN")
    row_id = decode_id(token_id, "ApiTokenInfo")
    async with _uow(ctx) as work:
        view, changed = await token_admin.revoke(work.session, tenant_id, row_id, work.now)
        if changed:
            work.events.append(TokenRevoked(tenant_id=tenant_id, token_id=row_id))
    # Committed and published to the other processes; here it holds before this returns.
    forget_here(ctx.services, row_id)
    return view
