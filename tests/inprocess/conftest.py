"""The in-process tier: GraphQL over HTTP against app.web.asgi.create_app in this process (httpx's
ASGI transport, lifespan by asgi-lifespan), no socket and no server process. Same fixtures as
the API suite: `server` (an AppServer), `tenant`, `other_tenant`, `module_tenant`, on SQLite
and PostgreSQL (the postgres half is e2e: it needs the real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.app_server import AppServer, running_app
from tests.conftest import Tenant
from tests.server import throwaway_database

_counter = iter(range(1_000_000))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of the in-process app's own (not the e2e server's)."""
    with throwaway_database(request.param) as url:
        yield url


@pytest.fixture(scope="session")
async def server(database_url: str) -> AsyncIterator[AppServer]:
    async with running_app(database_url) as app:
        yield app


def new_tenant(server: AppServer, label: str) -> Tenant:
    return Tenant(server, f"ip{next(_counter)}-{label[:40]}")


@pytest.fixture
def tenant(server: AppServer, request: pytest.FixtureRequest) -> Tenant:
    """A tenant of its own for each test; its tokens are made in this process."""
    return new_tenant(server, request.node.name)


@pytest.fixture
def other_tenant(server: AppServer) -> Tenant:
    return new_tenant(server, "other")


@pytest.fixture(scope="module")
def module_tenant(server: AppServer, request: pytest.FixtureRequest) -> Tenant:
    """One tenant for a module whose tests only read what its setup created."""
    return new_tenant(server, request.module.__name__.rsplit(".", 1)[-1])
