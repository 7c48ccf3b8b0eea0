"""Per-request context (per connection on WebSockets): services, the caller and loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from app.auth import Principal, bearer_token
from app.errors import Unauthenticated
from app.reads.runs import policies_by_ids, runs_by_ids
from app.reads.users import users_by_ids
from app.services import Services
from app.views import PolicyView, RunView, UserView


class Loaders:
    """Batch loaders (no N+1): one query per kind of row per tick of the event loop."""

    def __init__(self, services: Services, tenant_id: int, *, cache: bool) -> None:
        db = services.db

        async def load_policies(ids: list[int]) -> list[PolicyView | None]:
            async with db.read() as session:
                found = await policies_by_ids(session, tenant_id, ids)
            return [found.get(i) for i in ids]

        async def load_runs(ids: list[int]) -> list[RunView | None]:
            async with db.read() as session:
                found = await runs_by_ids(session, tenant_id, ids)
            return [found.get(i) for i in ids]

        async def load_users(ids: list[int]) -> list[UserView | None]:
            async with db.read() as session:
                found = await users_by_ids(session, tenant_id, ids)
            return [found.get(i) for i in ids]

        self.policy = DataLoader(load_fn=load_policies, cache=cache)
        self.run = DataLoader(load_fn=load_runs, cache=cache)
        self.user = DataLoader(load_fn=load_users, cache=cache)


@dataclass(slots=True)
class Context:
    services: Services
    request: Any  # starlette Request or WebSocket
    websocket: bool = False
    connection_params: dict[str, Any] | None = None
    principal_: Principal | None = None
    _loaders: Loaders | None = field(default=None)

    def bearer(self) -> str | None:
        if self.websocket:
            params = self.connection_params or {}
            value = params.get("authorization") or params.get("Authorization")
            return bearer_token(value) if isinstance(value, str) else None
        return bearer_token(self.request.headers.get("authorization"))

    async def principal(self) -> Principal:
        if self.principal_ is None:
            if self.websocket:
                raise Unauthenticated("Send the token in connection_init.")
            self.principal_ = await self.services.authenticator.authenticate(self.bearer())
        return self.principal_

    @property
    def loaders(self) -> Loaders:
        principal = self.principal_
        if principal is None:
            raise Unauthenticated("Not authenticated.")
        if self.websocket:
            # A WebSocket context lives as long as the connection: never cache rows in it.
            return Loaders(self.services, principal.tenant_id, cache=False)
        if self._loaders is None:
            self._loaders = Loaders(self.services, principal.tenant_id, cache=True)
        return self._loaders
