"""Shared fixtures: a real server per database backend, tenants and tokens, gql clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api import Api
from tests.server import Server, postgres_database, run_server, sqlite_database
from tests.services import postgres_admin_url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The whole API suite runs on the embedded SQLite file and on a throw-away PostgreSQL DB."""
    if request.param == "sqlite":
        with sqlite_database() as url:
            yield url
    else:
        with postgres_database(postgres_admin_url()) as url:
            yield url


@pytest.fixture(scope="session")
def server(database_url: str) -> Iterator[Server]:
    with run_server(database_url) as running:
        yield running


class Tenant:
    """A fresh tenant on the server with one token per role."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self._apis: dict[str, Api] = {}

    def api(self, role: str) -> Api:
        if role not in self._apis:
            token = self.server.token(self.name, role)
            self._apis[role] = Api(self.server.graphql_url, self.server.ws_url, token)
        return self._apis[role]

    @property
    def admin(self) -> Api:
        return self.api("admin")

    @property
    def worker(self) -> Api:
        return self.api("worker")

    @property
    def viewer(self) -> Api:
        return self.api("viewer")

    @property
    def operator(self) -> Api:
        return self.api("operator")


_counter = iter(range(1_000_000))


@pytest.fixture
def tenant(server: Server, request: pytest.FixtureRequest) -> Tenant:
    """A tenant of its own for each test: tests never see each other's data."""
    return Tenant(server, f"t{next(_counter)}-{request.node.name[:40]}")


@pytest.fixture
def other_tenant(server: Server) -> Tenant:
    return Tenant(server, f"other{next(_counter)}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main
    thread while its session-scoped browser is open, which breaks every asyncio test after it."""
    page_tests = [item for item in items if "tests/page/" in item.nodeid]
    others = [item for item in items if "tests/page/" not in item.nodeid]
    items[:] = others + page_tests
