"""`syncstatus token create|list|revoke` (their arguments: app.cli.main), and the demo's viewer
token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from app.admin import audit, token_admin
from app.admin.token_admin import TokenView
from app.auth.tokens import issue_token, tenant_by_name
from app.domain import audit_summaries
from app.domain.errors import ServiceError
from app.domain.ids import decode_id, encode_id
from app.domain.timeutil import MICROS_PER_SECOND, from_micros
from app.domain.validation import MAX_TOKEN_LIFETIME_DAYS
from app.domain.validation import name as valid_name
from app.events.broker import create_broadcast, max_message_bytes
from app.events.messages import Publisher, TokenRevoked
from app.store.engine import Database, open_database, run_in
from app.store.models import Tenant
from app.store.schema_version import ready_for_commands
from app.store.unit_of_work import Work, unit_of_work
from app.web.settings import Settings

log = logging.getLogger(__name__)
BROKER_TIMEOUT = 5.0


class CommandError(Exception):
    """What the command was asked for does not exist: printed as one line, exit status 1."""

    status = 1


class Refused(CommandError):
    """The command did not run (bad arguments, a schema behind): exit status 2, as every
    command's refusals (app/cli/main.py)."""

    status = 2


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.action == "create":
            token = asyncio.run(
                create(
                    settings,
                    args.tenant,
                    args.role,
                    args.name,
                    expires_in_days=args.expires_in_days,
                    create_tenant=args.create_tenant,
                )
            )
            print(f"created a {args.role} token for tenant {args.tenant!r}; it is shown only once:")
            print(token)
        elif args.action == "list":
            print(table(asyncio.run(list_tokens(settings, args.tenant))))
        else:
            view = asyncio.run(revoke(settings, args.tenant, args.id))
            print(f"revoked token {args.id} ({view.name!r}) of tenant {args.tenant!r}")
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status
    return 0


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    db = open_database(settings.database_url, timeout=settings.database_timeout_seconds)
    try:
        problem = await ready_for_commands(db)
        if problem is not None:
            raise Refused(problem)
        yield db
    finally:
        await db.dispose()


async def _tenant(db: Database, tenant: str) -> Tenant:
    async with db.read() as session:
        row = await tenant_by_name(session, tenant, create=False)
    if row is None:
        raise CommandError(f"no tenant named {tenant!r}")
    return row


async def create(
    settings: Settings,
    tenant: str,
    role: str,
    name: str,
    *,
    expires_in_days: int | None = None,
    create_tenant: bool = False,
) -> str:
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_LIFETIME_DAYS:
        raise Refused(f"--expires-in-days must be between 1 and {MAX_TOKEN_LIFETIME_DAYS}")
    try:
        name = valid_name(name)
    except ServiceError as error:
        raise Refused(error.message) from None
    if not tenant.strip():
        raise Refused("--tenant must not be blank")
    async with _database(settings) as db, unit_of_work(db, Publisher(_Nowhere())) as work:
        row = await tenant_by_name(work.session, tenant, create=create_tenant)
        if row is None:
            raise CommandError(f"no tenant named {tenant!r} (pass --create-tenant to create it)")
        expires_at = None
        if expires_in_days is not None:
            expires_at = work.now + expires_in_days * 86_400 * MICROS_PER_SECOND
        token, _ = await issue_token(work.session, row.id, name, role.upper(), expires_at)
        await audit.token_created(work.session, row.id, audit.CLI, token, role.upper())
        return token


async def list_tokens(settings: Settings, tenant: str) -> list[TokenView]:
    async with _database(settings) as db:
        row = await _tenant(db, tenant)
        async with db.read() as session:
            return await token_admin.all_tokens(session, row.id)


class _Nowhere:
    """The in-process broadcast reaches no server from here: servers find the revocation in
    the database instead (app.auth.revocations polls it)."""

    async def publish(self, channel: str, message: Any) -> None:
        return None


@asynccontextmanager
async def _publisher(settings: Settings) -> AsyncIterator[Publisher]:
    """Publishes to the servers' broker, so that they apply a revocation at once."""
    if settings.broadcast_url.startswith("memory:"):
        yield Publisher(_Nowhere())
        return
    broadcast = create_broadcast(settings.broadcast_url)
    try:
        await asyncio.wait_for(broadcast.connect(), BROKER_TIMEOUT)
    except Exception as error:
        log.warning("broker not reachable (%s): servers see the revocation within seconds", error)
        yield Publisher(_Nowhere())
        return
    try:
        yield Publisher(broadcast, max_message_bytes(broadcast))
    finally:
        await broadcast.disconnect()


async def revoke(settings: Settings, tenant: str, global_id: str) -> TokenView:
    try:
        token_id = decode_id(global_id, "ApiTokenInfo")
    except ServiceError as error:
        raise Refused(error.message) from None
    async with _database(settings) as db:
        row = await _tenant(db, tenant)
        async with _publisher(settings) as publisher:
            try:
                async with unit_of_work(db, publisher) as work:
                    view, changed = await token_admin.revoke(
                        work.session, row.id, token_id, work.now
                    )
                    if changed:
                        work.events.append(TokenRevoked(tenant_id=row.id, token_id=token_id))
                        await _audit_revoked(work, row.id, view)
            except ServiceError:
                raise CommandError(f"tenant {tenant!r} has no token {global_id}") from None
    return view


async def replace_token(settings: Settings, tenant: str, role: str, name: str) -> str:
    """A new token named ``name`` of the tenant (created if missing); the tenant's earlier
    usable tokens of that name are revoked in the same transaction (the demo restarting)."""
    async with _database(settings) as db, unit_of_work(db, Publisher(_Nowhere())) as work:
        row = await tenant_by_name(work.session, tenant, create=True)
        assert row is not None  # created
        for view in await token_admin.revoke_named(work.session, row.id, name, work.now):
            work.events.append(TokenRevoked(tenant_id=row.id, token_id=view.id))
            await _audit_revoked(work, row.id, view)
        token, _ = await issue_token(work.session, row.id, name, role)
        await audit.token_created(work.session, row.id, audit.CLI, token, role)
        return token


async def _audit_revoked(work: Work, tenant_id: int, view: TokenView) -> None:
    target = encode_id("ApiTokenInfo", view.id)
    summary = audit_summaries.token_revoked(view.name, view.role)
    await run_in(
        work.session, audit.record, tenant_id, audit.CLI, "token.revoke", target, summary, work.now
    )


def _when(micros: int | None) -> str:
    if micros is None:
        return "-"
    return from_micros(micros).strftime("%Y-%m-%d %H:%M:%SZ")


def table(tokens: Sequence[TokenView]) -> str:
    header = ("id", "name", "role", "created", "expires", "last used", "revoked")
    rows = [
        (
            encode_id("ApiTokenInfo", t.id),
            t.name,
            t.role,
            _when(t.created_at),
            _when(t.expires_at),
            _when(t.last_used_at),
            _when(t.revoked_at),
        )
        for t in tokens
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )
