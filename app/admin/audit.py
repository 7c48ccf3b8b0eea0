"""The audit log: who did what to which object, recorded in the caller's transaction.

One INSERT on a Connection: the run lifecycle's writers call `record` directly, administration
through app.store.engine.run_in; either way the event commits or rolls back with the change it
describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.tokens import Principal, hash_token
from app.domain import audit_summaries
from app.domain.ids import encode_id
from app.domain.timeutil import now_micros
from app.domain.validation import TEXT_MAX
from app.store.engine import run_in
from app.store.models import ApiToken, AuditEvent

ACTIONS = (
    "policy.create",
    "policy.update",
    "policy.activate",
    "policy.deactivate",
    "users.add",
    "users.assign",
    "token.create",
    "token.revoke",
    "sync.request",
    "sync.request_bulk",
    "webhook.create",
    "webhook.delete",
)
_INSERT = insert(cast(Table, AuditEvent.__table__))


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    role: str | None  # None for the command line

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.token_name or f"token {principal.token_id}", principal.role)


CLI = Actor("cli", None)


def _row(
    tenant_id: int, actor: Actor, action: str, target_id: str | None, summary: str, at: int
) -> dict[str, Any]:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    line = " ".join(summary.split())  # one line, whatever names it quotes
    if len(line) > TEXT_MAX:
        line = line[: TEXT_MAX - 1] + "…"
    return {
        "tenant_id": tenant_id,
        "at": at,
        "actor": actor.name,
        "actor_role": actor.role,
        "action": action,
        "target_id": target_id,
        "summary": line,
    }


def record(
    conn: Connection,
    tenant_id: int,
    actor: Actor,
    action: str,
    target_id: str | None,
    summary: str,
    at: int,
) -> None:
    """Records the event in the transaction of `conn` (a run_write function's connection)."""
    conn.execute(_INSERT, _row(tenant_id, actor, action, target_id, summary, at))


async def token_created(
    session: AsyncSession, tenant_id: int, actor: Actor, token: str, role: str
) -> None:
    """token.create, in the transaction that created the token (GraphQL and the CLI)."""
    row = (
        await session.execute(
            select(ApiToken.id, ApiToken.name).where(ApiToken.token_hash == hash_token(token))
        )
    ).one()
    summary = audit_summaries.token_created(row.name, role)
    target = encode_id("ApiTokenInfo", row.id)
    await run_in(session, record, tenant_id, actor, "token.create", target, summary, now_micros())
