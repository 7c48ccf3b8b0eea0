"""API tokens: only a SHA-256 hash is stored; each token has one tenant and one role."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import Database
from app.db.models import ApiToken, Tenant
from app.errors import BadUserInput, Forbidden, Unauthenticated
from app.timeutil import now_micros

ROLES = ("VIEWER", "OPERATOR", "WORKER", "ADMIN")
# What each role may do beyond reading: a worker reports runs, an operator requests syncs.
GRANTS: dict[str, frozenset[str]] = {
    "VIEWER": frozenset({"VIEWER"}),
    "OPERATOR": frozenset({"VIEWER", "OPERATOR"}),
    "WORKER": frozenset({"VIEWER", "WORKER"}),
    "ADMIN": frozenset(ROLES),
}
TOKEN_PREFIX = "sst_"
MAX_TOKEN_LENGTH = 200
CACHE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token's tenant and role, and the token itself (for the audit log)."""

    tenant_id: int
    role: str
    token_id: int = 0
    token_name: str = ""

    def require(self, role: str) -> None:
        if role not in GRANTS[self.role]:
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
    cost a database round trip on every page load and subscription."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("An API token is required (Authorization: Bearer <token>).")
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():  # ours are ASCII
            raise Unauthenticated("Invalid API token.")
        digest = hash_token(token)
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        async with self._db.read() as session:
            row = (
                await session.execute(
                    select(ApiToken.id, ApiToken.tenant_id, ApiToken.role, ApiToken.name).where(
                        ApiToken.token_hash == digest
                    )
                )
            ).first()
        if row is None:
            raise Unauthenticated("Invalid API token.")
        principal = Principal(
            tenant_id=row.tenant_id, role=row.role, token_id=row.id, token_name=row.name
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal


async def tenant_by_name(session: AsyncSession, name: str, *, create: bool) -> Tenant | None:
    tenant = (await session.scalars(select(Tenant).where(Tenant.name == name))).first()
    if tenant is None and create:
        tenant = Tenant(name=name, created_at=now_micros())
        session.add(tenant)
        await session.flush()
    return tenant


async def create_token(session: AsyncSession, tenant_id: int, name: str, role: str) -> str:
    if role not in ROLES:
        raise BadUserInput(f"Unknown role {role!r}.")
    token = new_token()
    session.add(
        ApiToken(
            tenant_id=tenant_id,
            name=name,
            role=role,
            token_hash=hash_token(token),
            created_at=now_micros(),
        )
    )
    await session.flush()
    return token
