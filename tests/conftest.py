"""Shared fixtures: a real server per database backend, tenants and tokens, gql clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api import Api
from tests.app_server import AppServer
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

    def __init__(self, server: Server | AppServer, name: str) -> None:
        self.server = server
        self.name = name
        self._apis: dict[str, Api] = {}

    def api(self, role: str) -> Api:
        if role not in self._apis:
            self._apis[role] = self.server.api(self.server.token(self.name, role))
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


# The e2e tier: what only a real socket, server process, browser, PostgreSQL or Redis shows.
# A test is e2e when it uses one of these fixtures (the `server` of tests/inprocess/ is the app
# in this process, and is not), runs on the postgres database, or lives in one of these places
# (modules that start their own servers, brokers or CLI processes).
E2E_FIXTURES = {"server", "page_env", "browser", "private_redis"}
E2E_PLACES = (
    "tests/page/",
    "tests/broadcast/",
    "tests/demo/test_demo.py",
    "tests/demo/test_worker.py",
    "tests/subscriptions/test_cross_process.py",
    "tests/subscriptions/test_publish_burst.py",
    "tests/subscriptions/test_broker_outage.py",
    "tests/api_tests/test_cli.py",
)
IN_PROCESS = "tests/inprocess/"
# A module that imports one of these starts servers, CLI processes, brokers or a browser itself.
E2E_IMPORTS = {
    ("tests.server", "run_server"),
    ("tests.server", "cli"),
    ("tests.server", "postgres_database"),
    ("tests.services", "redis_url"),
    ("tests.services", "postgres_admin_url"),
    ("tests.private_redis", "started_private_redis"),
    ("tests.subscriptions.multi", "postgres_servers"),
    ("playwright.sync_api", "sync_playwright"),
}


def _starts_services(module: object) -> bool:
    return any(
        (getattr(value, "__module__", None), getattr(value, "__name__", None)) in E2E_IMPORTS
        for value in vars(module).values()
        if callable(value)
    )


def _is_e2e(item: pytest.Item) -> bool:
    if item.nodeid.startswith(E2E_PLACES):
        return True
    module = getattr(item, "module", None)
    if module is not None and not item.nodeid.startswith(IN_PROCESS) and _starts_services(module):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("database_url") == "postgres":
        return True
    fixtures = set(getattr(item, "fixturenames", ()))
    if item.nodeid.startswith(IN_PROCESS):
        fixtures.discard("server")
    return bool(fixtures & E2E_FIXTURES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the e2e tier (`pytest -m "not e2e"` is the inner loop). Browser tests run last:
    Playwright's sync API keeps an event loop running in the main thread while its
    session-scoped browser is open, which breaks every asyncio test after it."""
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
    page_tests = [item for item in items if "tests/page/" in item.nodeid]
    others = [item for item in items if "tests/page/" not in item.nodeid]
    items[:] = others + page_tests
