"""Mutation resolvers: check the role, parse ids, run one unit of work through app/. The run
lifecycle's unit of work is one synchronous function (load, then change) that app.store.unit_of_work
runs as one transaction; administration's is an ORM session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Connection

from app.admin import audit, policies, token_admin, user_admin
from app.admin.token_admin import TokenView, check_expiry
from app.auth.revocations import forget_here
from app.auth.tokens import Principal, issue_token
from app.domain import audit_summaries as says
from app.domain.errors import BadUserInput
from app.domain.ids import decode_id, encode_id
from app.domain.roles import Role
from app.domain.validation import FailedItemInput, name
from app.domain.views import PolicyView, RunView, UserView
from app.events.messages import Event, TokenRevoked, UserEvent
from app.lifecycle import transitions
from app.store.engine import run_in
from app.store.unit_of_work import Change, Work, unit_of_work, write
from app.web.context import Context
from app.webhooks import registry, urls

T = TypeVar("T")


async def _tenant(ctx: Context, role: str) -> int:
    return (await _caller(ctx, role)).tenant_id


async def _caller(ctx: Context, role: str) -> Principal:
    principal = await ctx.principal()
    principal.require(role)
    return principal


def _uow(ctx: Context):
    return unit_of_work(ctx.services.db, ctx.services.publisher)


async def _write(ctx: Context, change: Change[T]) -> T:
    users: dict[int, UserView] = {}

    def recording(conn: Connection, now: int) -> tuple[T, list[Event]]:
        result, events = change(conn, now)
        users.clear()
        users.update((e.user.id, e.user) for e in events if isinstance(e, UserEvent))
        return result, events

    result = await write(ctx.services.db, ctx.services.publisher, recording)
    # The users and runs as the transaction left them answer `run { user { … } }` with no read
    # after the commit: a database lost right then turned a committed claim into an error, and
    # its runs stayed RUNNING with no worker that knew of them.
    ctx.loaders.user.prime_many(users)
    runs = result if isinstance(result, list) else [result]
    ctx.loaders.run.prime_many({r.id: r for r in runs if isinstance(r, RunView)})
    return result


async def claim_due_sync_runs(
    ctx: Context, limit: int, services: Sequence[str] | None
) -> list[RunView]:
    tenant_id = await _tenant(ctx, Role.WORKER)

    def claim(conn: Connection, now: int) -> tuple[list[RunView], list[Event]]:
        return transitions.claim_due_runs(conn, tenant_id, now, limit, services)

    return await _write(ctx, claim)


async def start_sync_run(
    ctx: Context, user_id: str, kind: str | None, service: str, items_total: int | None
) -> RunView:
    tenant_id = await _tenant(ctx, Role.WORKER)
    row_id = decode_id(user_id, "SyncUser")

    def start(conn: Connection, now: int) -> tuple[RunView, list[Event]]:
        user = transitions.load_user(conn, tenant_id, row_id)
        run, event = transitions.start_run(conn, user, now, kind, service, items_total)
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
    tenant_id = await _tenant(ctx, Role.WORKER)
    row_id = decode_id(run_id, "SyncRun")

    def report(conn: Connection, now: int) -> tuple[RunView, list[Event]]:
        run, user = transitions.load_run(conn, tenant_id, row_id)
        return transitions.report_progress(
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
    tenant_id = await _tenant(ctx, Role.WORKER)
    row_id = decode_id(run_id, "SyncRun")

    def finish(conn: Connection, now: int) -> tuple[RunView, list[Event]]:
        run, user = transitions.load_run(conn, tenant_id, row_id)
        finished, event = transitions.finish_run(
            conn, run, user, now, error_code, error_message, failed_items
        )
        return finished, [event]

    finished = await _write(ctx, finish)
    if ctx.services.deliverer is not None:  # a finish may have queued webhook deliveries
        ctx.services.deliverer.poke()
    return finished


async def request_sync(ctx: Context, user_id: str) -> UserView:
    principal = await _caller(ctx, Role.OPERATOR)
    tenant_id = principal.tenant_id
    row_id = decode_id(user_id, "SyncUser")

    def request(conn: Connection, now: int) -> tuple[UserView, list[Event]]:
        user = transitions.load_user(conn, tenant_id, row_id)
        event = transitions.request_sync(conn, user, now)
        summary = says.sync_requested(user.view.email)
        audit.record(
            conn, tenant_id, audit.Actor.of(principal), "sync.request", user_id, summary, now
        )
        return event.user, [event]

    return await _write(ctx, request)


async def create_policy(ctx: Context, data: policies.PolicyInput) -> PolicyView:
    principal = await _caller(ctx, Role.ADMIN)
    tenant_id = principal.tenant_id
    async with _uow(ctx) as work:
        policy, event = await policies.create_policy(work.session, tenant_id, work.now, data)
        work.events.append(event)
        view = PolicyView.of(policy)
        await _audit(work, principal, "policy.create", _policy_id(view), says.policy_created(view))
        return view


def _policy_id(view: PolicyView) -> str:
    return encode_id("Policy", view.id)


async def _audit(
    work: Work, principal: Principal, action: str, target_id: str | None, summary: str
) -> None:
    await run_in(
        work.session,
        audit.record,
        principal.tenant_id,
        audit.Actor.of(principal),
        action,
        target_id,
        summary,
        work.now,
    )


async def update_policy(ctx: Context, policy_id: str, data: policies.PolicyInput) -> PolicyView:
    principal = await _caller(ctx, Role.ADMIN)
    tenant_id = principal.tenant_id
    row_id = decode_id(policy_id, "Policy")
    async with _uow(ctx) as work:
        before = PolicyView.of(await policies.load_policy(work.session, tenant_id, row_id))
        policy, events = await policies.update_policy(
            work.session, tenant_id, row_id, work.now, data
        )
        work.events.extend(events)
        view = PolicyView.of(policy)
        summary = says.policy_updated(before, view)
        await _audit(work, principal, "policy.update", _policy_id(view), summary)
        return view


async def set_policy_active(ctx: Context, policy_id: str, active: bool) -> PolicyView:
    principal = await _caller(ctx, Role.ADMIN)
    tenant_id = principal.tenant_id
    row_id = decode_id(policy_id, "Policy")
    async with _uow(ctx) as work:
        policy, events = await policies.set_policy_active(
            work.session, tenant_id, row_id, work.now, active
        )
        work.events.extend(events)
        view = PolicyView.of(policy)
        was_active = view.active if not events else not view.active
        action = "policy.activate" if active else "policy.deactivate"
        summary = says.policy_activation(view, was_active)
        await _audit(work, principal, action, _policy_id(view), summary)
        return view


async def add_sync_users(
    ctx: Context, users: Sequence[tuple[str, str, str | None]]
) -> list[UserView]:
    principal = await _caller(ctx, Role.ADMIN)
    tenant_id = principal.tenant_id
    parsed = [
        (email, destination, decode_id(policy_id, "Policy") if policy_id is not None else None)
        for email, destination, policy_id in users
    ]
    async with _uow(ctx) as work:
        rows, events = await user_admin.add_users(work.session, tenant_id, work.now, parsed)
        work.events.extend(events)
        if rows:
            names = [
                (await policies.load_policy(work.session, tenant_id, p)).name
                for p in sorted({row.policy_id for row in rows if row.policy_id})
            ]
            target = encode_id("SyncUser", rows[0].id) if len(rows) == 1 else None
            summary = says.users_added([row.email for row in rows], names)
            await _audit(work, principal, "users.add", target, summary)
        return [event.user for event in events if hasattr(event, "user")]


async def assign_policy(
    ctx: Context, user_ids: Sequence[str], policy_id: str | None
) -> list[UserView]:
    principal = await _caller(ctx, Role.ADMIN)
    tenant_id = principal.tenant_id
    ids = [decode_id(user_id, "SyncUser") for user_id in user_ids]
    # Only null unassigns: "" is a malformed id, not a missing one.
    policy_row_id = decode_id(policy_id, "Policy") if policy_id is not None else None
    async with _uow(ctx) as work:
        rows, events = await user_admin.assign_policy(
            work.session, tenant_id, work.now, ids, policy_row_id
        )
        work.events.extend(events)
        policy = (
            PolicyView.of(await policies.load_policy(work.session, tenant_id, policy_row_id))
            if policy_row_id is not None
            else None
        )
        summary = says.users_assigned([row.email for row in rows], policy, len(events))
        await _audit(work, principal, "users.assign", policy_id, summary)
        return [UserView.of(row) for row in rows]


async def create_api_token(
    ctx: Context, token_name: str, role: str, expires_at: int | None = None
) -> tuple[str, TokenView]:
    principal = await _caller(ctx, Role.ADMIN)
    tenant_id = principal.tenant_id
    token_name = name(token_name)
    async with _uow(ctx) as work:
        expiry = check_expiry(expires_at, work.now)
        token, row = await issue_token(work.session, tenant_id, token_name, role, expiry)
        view = TokenView.of(row)
        await audit.token_created(work.session, tenant_id, audit.Actor.of(principal), token, role)
    return token, view


async def revoke_api_token(ctx: Context, token_id: str) -> TokenView:
    principal = await _caller(ctx, Role.ADMIN)
    tenant_id = principal.tenant_id
    row_id = decode_id(token_id, "ApiTokenInfo")
    async with _uow(ctx) as work:
        view, changed = await token_admin.revoke(work.session, tenant_id, row_id, work.now)
        if changed:
            work.events.append(TokenRevoked(tenant_id=tenant_id, token_id=row_id))
            summary = says.token_revoked(view.name, view.role)
            await _audit(work, principal, "token.revoke", token_id, summary)
    # Committed and published to the other processes; here it holds before this returns.
    forget_here(ctx.services, row_id)
    return view


async def create_webhook(
    ctx: Context, url: str, events: Sequence[str]
) -> tuple[registry.WebhookView, str]:
    principal = await _caller(ctx, Role.ADMIN)
    services = ctx.services
    wanted = registry.clean_events(events)
    # Resolved before the transaction: a name lookup may take seconds.
    await urls.vet(url, allow_private=services.webhook_settings.allow_private)
    if services.secret_box is None:
        raise BadUserInput(
            "Webhooks need the server setting SYNCSTATUS_SECRET_KEY on PostgreSQL (see README)."
        )
    async with _uow(ctx) as work:
        row, secret = await registry.create_webhook(
            work.session, principal.tenant_id, work.now, url, wanted, services.secret_box
        )
        view = registry.WebhookView.of(row)
        target = encode_id("Webhook", view.id)
        summary = says.webhook_created(view.url, view.events)
        await _audit(work, principal, "webhook.create", target, summary)
    return view, secret


async def delete_webhook(ctx: Context, webhook_id: str) -> str:
    principal = await _caller(ctx, Role.ADMIN)
    row_id = decode_id(webhook_id, "Webhook")
    async with _uow(ctx) as work:
        row = await registry.delete_webhook(work.session, principal.tenant_id, row_id)
        summary = says.webhook_deleted(row.url)
        await _audit(work, principal, "webhook.delete", webhook_id, summary)
    return webhook_id
