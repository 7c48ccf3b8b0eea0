"""Per-request context (per connection on WebSockets): services, the caller and loaders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from app.auth.tokens import Principal, bearer_token
from app.domain.errors import BadUserInput, Unauthenticated
from app.domain.views import FailedItemView, PolicyView, RunView, UserView
from app.reads.pagination import Page, PageArgs
from app.reads.runs import failed_item_pages, policies_by_ids, run_pages, runs_by_ids
from app.reads.users import users_by_ids
from app.web.services import Services

T = TypeVar("T")
Paged = tuple[Page[T], int]
# Read sessions one request (or one WebSocket connection) holds at once. The fields of a query
# resolve concurrently, and the SQLite read pool has 4 connections: a document of 100 aliased
# counts took them all, and every other tenant's request queued behind its 100 reads. Two
# cover the page (its users, then its policies and runs side by side).
READS_AT_ONCE = 2


class Loaders:
    """Batch loaders (no N+1): one query per kind of row per tick of the event loop."""

    def __init__(
        self,
        reading: Callable[[], AbstractAsyncContextManager[AsyncSession]],
        tenant_id: int,
        *,
        cache: bool,
    ) -> None:

        async def load_policies(ids: list[int]) -> list[PolicyView | None]:
            async with reading() as session:
                found = await policies_by_ids(session, tenant_id, ids)
            return [found.get(i) for i in ids]

        async def load_runs(ids: list[int]) -> list[RunView | None]:
            async with reading() as session:
                found = await runs_by_ids(session, tenant_id, ids)
            return [found.get(i) for i in ids]

        async def load_users(ids: list[int]) -> list[UserView | None]:
            async with reading() as session:
                found = await users_by_ids(session, tenant_id, ids)
            return [found.get(i) for i in ids]

        async def load_runs_of_users(keys: list[tuple[int, PageArgs]]) -> list[Any]:
            return await _pages_by_args(
                keys, lambda session, ids, args: run_pages(session, tenant_id, ids, args)
            )

        async def load_failed_items(keys: list[tuple[int, PageArgs]]) -> list[Any]:
            return await _pages_by_args(
                keys, lambda session, ids, args: failed_item_pages(session, tenant_id, ids, args)
            )

        async def _pages_by_args(
            keys: list[tuple[int, PageArgs]],
            read: Callable[[Any, list[int], PageArgs], Awaitable[dict[int, Any]]],
        ) -> list[Any]:
            """One read per distinct page arguments (one per alias), each for all parents."""
            by_args: dict[PageArgs, list[int]] = {}
            for parent_id, args in keys:
                by_args.setdefault(args, []).append(parent_id)
            found: dict[tuple[int, PageArgs], Any] = {}
            async with reading() as session:
                for args, ids in by_args.items():
                    try:
                        pages = await read(session, sorted(set(ids)), args)
                    except BadUserInput as error:  # a bad cursor: the error of each parent
                        found.update({(i, args): error for i in ids})
                        continue
                    found.update({(i, args): page for i, page in pages.items()})
            return [found[key] for key in keys]

        self.user_runs: DataLoader[tuple[int, PageArgs], Paged[RunView]] = DataLoader(
            load_fn=load_runs_of_users, cache=cache
        )
        self.run_failed_items: DataLoader[tuple[int, PageArgs], Paged[FailedItemView]] = DataLoader(
            load_fn=load_failed_items, cache=cache
        )
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
    _reads: asyncio.Semaphore | None = field(default=None)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read session, at most READS_AT_ONCE of them at a time for this request."""
        if self._reads is None:
            self._reads = asyncio.Semaphore(READS_AT_ONCE)
        async with self._reads, self.services.db.read() as session:
            yield session

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
        if self._loaders is None:
            # A WebSocket context lives as long as the connection: never cache rows in it
            # (its loaders still batch what one tick asks for).
            self._loaders = Loaders(self.read, principal.tenant_id, cache=not self.websocket)
        return self._loaders
