"""API tokens: only a SHA-256 hash is stored; each token has one tenant and one role, and may
expire or be revoked. An unknown, expired or revoked token is refused the same way, after the
same work (one lookup by hash), so neither the answer nor its timing tells them apart."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.usage import UsageRecorder
from app.domain.errors import BadUserInput, Forbidden, Unauthenticated
from app.domain.roles import ROLES, grants
from app.domain.timeutil import MICROS_PER_SECOND, now_micros
from app.store.engine import Database
from app.store.models import ApiToken, Tenant

TOKEN_PREFIX = "sst_"
MAX_TOKEN_LENGTH = 200
CACHE_SECONDS = 30.0
MAX_CACHED = 10_000
MAX_REVOKED_REMEMBERED = 100_000
INVALID = "Invalid API token."


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token's tenant and role, and the token itself (for the audit log)."""

    tenant_id: int
    role: str
    token_id: int = 0
    token_name: str = ""
    expires_at: int | None = None  # microseconds; None: never

    def usable(self, now: int) -> bool:
        return self.expires_at is None or now < self.expires_at

    def require(self, role: str) -> None:
        if not grants(self.role, role):
            raise Forbidden(f"This needs the {role} role; the token has {self.role}.")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Authenticator:
    """Resolves tokens to principals, caching hits briefly: a token lookup per request would
    cost a database round trip on every page load and subscription.

    A cached entry ends at the token's expiry, and at once when a revocation reaches this
    process (`revoked`, called for the broadcast event every process receives). Revoked ids are
    remembered too, so a lookup that read the row just before the revocation committed cannot
    put the token back into the cache."""

    def __init__(self, db: Database, usage: UsageRecorder | None = None) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._revoked: dict[int, None] = {}  # insertion-ordered, bounded
        self._generation = 0  # grows when cached entries are dropped
        self.usage = usage or UsageRecorder(db)

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("An API token is required (Authorization: Bearer <token>).")
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():  # ours are ASCII
            raise Unauthenticated(INVALID)
        digest = hash_token(token)
        now = now_micros()
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            known = cached[1]
            if known.usable(now) and known.token_id not in self._revoked:
                self.usage.used(known.token_id, now)
                return known
        generation = self._generation
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(
                        ApiToken.id,
                        ApiToken.tenant_id,
                        ApiToken.role,
                        ApiToken.name,
                        ApiToken.expires_at,
                        ApiToken.revoked_at,
                        ApiToken.last_used_at,
                    ).where(ApiToken.token_hash == digest)
                )
            ).first()
        principal = (
            Principal(
                tenant_id=row.tenant_id,
                role=row.role,
                token_id=row.id,
                token_name=row.name,
                expires_at=row.expires_at,
            )
            if row is not None and row.revoked_at is None
            else None
        )
        if (
            row is None
            or principal is None
            or not principal.usable(now)
            or principal.token_id in self._revoked
        ):
            self._cache.pop(digest, None)
            raise Unauthenticated(INVALID)
        if generation == self._generation:
            self._cache_put(digest, principal, now)
        self.usage.seen(principal.token_id, row.last_used_at)
        self.usage.used(principal.token_id, now)
        return principal

    def _cache_put(self, digest: str, principal: Principal, now: int) -> None:
        seconds = CACHE_SECONDS
        if principal.expires_at is not None:
            seconds = min(seconds, (principal.expires_at - now) / MICROS_PER_SECOND)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + seconds, principal)

    def revoked(self, token_id: int) -> None:
        """The token was revoked (here or on another process): never accept it again."""
        self._revoked[token_id] = None
        if len(self._revoked) > MAX_REVOKED_REMEMBERED:
            # The oldest are long out of every cache; the database refuses them anyway.
            del self._revoked[next(iter(self._revoked))]
        self._generation += 1
        for digest, (_, principal) in list(self._cache.items()):
            if principal.token_id == token_id:
                del self._cache[digest]

    def forget_all(self) -> None:
        """Drops every cached entry (revocations may have been missed: the broker reconnected)."""
        self._generation += 1
        self._cache.clear()

    async def close(self) -> None:
        await self.usage.close()


async def tenant_by_name(session: AsyncSession, name: str, *, create: bool) -> Tenant | None:
    tenant = (await session.scalars(select(Tenant).where(Tenant.name == name))).first()
    if tenant is None and create:
        tenant = Tenant(name=name, created_at=now_micros())
        session.add(tenant)
        await session.flush()
    return tenant


async def issue_token(
    session: AsyncSession, tenant_id: int, name: str, role: str, expires_at: int | None = None
) -> tuple[str, ApiToken]:
    """A new token (its secret, shown once, and its row) in the caller's transaction."""
    if role not in ROLES:
        raise BadUserInput(f"Unknown role {role!r}.")
    token = new_token()
    row = ApiToken(
        tenant_id=tenant_id,
        name=name,
        role=role,
        token_hash=hash_token(token),
        created_at=now_micros(),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return token, row


async def create_token(
    session: AsyncSession, tenant_id: int, name: str, role: str, expires_at: int | None = None
) -> str:
    token, _ = await issue_token(session, tenant_id, name, role, expires_at)
    return token
