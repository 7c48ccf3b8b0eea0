"""Administration of API tokens: list (never the secret), look up and revoke, per tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.errors import BadUserInput, NotFound
from app.domain.timeutil import MICROS_PER_SECOND
from app.domain.validation import MAX_TOKEN_LIFETIME_DAYS
from app.reads.pagination import Keyset, Page, PageArgs, keyset_page
from app.store.models import ApiToken

MAX_LIFETIME_MICROS = MAX_TOKEN_LIFETIME_DAYS * 86_400 * MICROS_PER_SECOND
# Newest first: ids grow with creation.
TOKENS = Keyset("tokens", (ApiToken.id,), descending=True, key_types=(int,))


@dataclass(frozen=True, slots=True)
class TokenView:
    id: int
    tenant_id: int
    name: str
    role: str
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    revoked_at: int | None

    @classmethod
    def of(cls, row: Any) -> TokenView:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            role=row.role,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


_COLUMNS = (
    ApiToken.id,
    ApiToken.tenant_id,
    ApiToken.name,
    ApiToken.role,
    ApiToken.created_at,
    ApiToken.expires_at,
    ApiToken.last_used_at,
    ApiToken.revoked_at,
)


def check_expiry(expires_at: int | None, now: int) -> int | None:
    """A new token's expiry: in the future, and within MAX_TOKEN_LIFETIME_DAYS."""
    if expires_at is None:
        return None
    if expires_at <= now:
        raise BadUserInput("expiresAt must be in the future.")
    if expires_at - now > MAX_LIFETIME_MICROS:
        raise BadUserInput(f"expiresAt must be within {MAX_TOKEN_LIFETIME_DAYS} days from now.")
    return expires_at


async def token_page(
    session: AsyncSession, tenant_id: int, args: PageArgs
) -> tuple[Page[TokenView], int]:
    query = select(*_COLUMNS).where(ApiToken.tenant_id == tenant_id)
    page = await keyset_page(session, query, TOKENS, tenant_id, args, lambda row: (row.id,))
    total = await session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.tenant_id == tenant_id)
    )
    items = [(cursor, TokenView.of(row)) for cursor, row in page.items]
    return Page(items, page.has_next, page.has_previous), int(total or 0)


async def all_tokens(session: AsyncSession, tenant_id: int) -> list[TokenView]:
    rows = await session.execute(
        select(*_COLUMNS).where(ApiToken.tenant_id == tenant_id).order_by(ApiToken.id.desc())
    )
    return [TokenView.of(row) for row in rows]


async def token_by_id(session: AsyncSession, tenant_id: int, token_id: int) -> TokenView | None:
    row = (
        await session.execute(
            select(*_COLUMNS).where(ApiToken.id == token_id, ApiToken.tenant_id == tenant_id)
        )
    ).first()
    return TokenView.of(row) if row is not None else None


async def revoke(
    session: AsyncSession, tenant_id: int, token_id: int, now: int
) -> tuple[TokenView, bool]:
    """Revokes the tenant's token in the caller's transaction: (the token, whether this call
    revoked it). One already revoked is returned unchanged; another tenant's is NOT_FOUND."""
    row = await session.scalar(
        select(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.tenant_id == tenant_id)
        .with_for_update()
    )
    if row is None:
        raise NotFound("No such API token.")
    changed = row.revoked_at is None
    if changed:
        row.revoked_at = now
        await session.flush()
    return TokenView.of(row), changed


async def revoke_named(
    session: AsyncSession, tenant_id: int, name: str, now: int
) -> list[TokenView]:
    """Revokes the tenant's tokens of this name that are not revoked yet; returns them."""
    rows = list(
        await session.scalars(
            select(ApiToken).where(
                ApiToken.tenant_id == tenant_id,
                ApiToken.name == name,
                ApiToken.revoked_at.is_(None),
            )
        )
    )
    for row in rows:
        row.revoked_at = now
    await session.flush()
    return [TokenView.of(row) for row in rows]
