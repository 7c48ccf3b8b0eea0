"""Shared fixtures: a real server per database backend, tenants and tokens, gql clients."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.store.engine import Database
from tests.api import Api
from tests.app_server import AppServer
from tests.server import Server, opened, run_server, throwaway_database


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The whole API suite runs on the embedded SQLite file and on a throw-away PostgreSQL DB."""
    with throwaway_database(request.param) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """`database_url` (the session's, or a module's own fresh one) opened in this process, for
    tests below the API."""
    async with opened(database_url) as database:
        yield database


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
    ("tests.server", "throwaway_database"),
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


# The serial phase: tests that measure time or memory (pacing, RSS, latency, rate-limit
# windows, GC pauses) and would fail beside others on a loaded 2-core machine. `./dev test`
# runs every other test on several xdist workers first, then these in one plain pytest process.
# Mark a new such test `@pytest.mark.serial`, or list its module here.
SERIAL_PLACES = (
    "tests/runtime/test_collector.py",
    "tests/ops/test_drain.py",
    "tests/subscriptions/test_slow_readers.py",
    "tests/subscriptions/test_stuck_sockets.py",
    "tests/subscriptions/test_long_lived.py",
    "tests/subscriptions/test_disconnects.py",
    "tests/subscriptions/test_broker_outage.py",
    "tests/subscriptions/test_cross_process_revocation.py",
    "tests/subscriptions/test_connection_rules.py::test_connection_without_init",
    # A slow receiver must not delay a fast one by 2 s: a latency bound.
    "tests/api_tests/test_webhooks.py::test_deliveries_per_endpoint_are_bounded",
    "tests/api_tests/test_limits.py::test_a_large_body_is_413",
    # How soon uvicorn's supervisor replaces killed workers: their imports compete for CPU.
    "tests/ops/test_workers.py::test_events_cross_workers_and_a_killed_worker_is_replaced",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial",
        choices=("include", "exclude", "only"),
        default="include",
        help="run the tests marked `serial` too (default), leave them out, or run only them "
        "(`./dev test` runs `exclude` on xdist workers, then `only`)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "serial: measures time or memory; never runs beside other tests"
    )


PAGE = "tests/page/"
# Seconds each scheduling unit took on xdist workers (tests/scope_seconds.py writes it from a
# `--durations=0` run): the longest units go out first, so the workers end together.
SCOPE_SECONDS = Path(__file__).with_name("scope_seconds.json")
UNKNOWN_TEST_SECONDS = 2.0  # a unit not in the file yet: its tests times this


# Modules whose every test is a unit of its own: long tests whose module fixture (a server) is
# cheap beside them.
FINE_UNITS = ("tests/fuzz/test_graphql_fuzz.py",)


def scope_of(nodeid: str) -> str:
    """The scheduling unit of a test: its module, or its module's sqlite or postgres half (they
    share no fixture); the browser tests are one unit (one server, one Chromium)."""
    module = nodeid.split("::", 1)[0]
    if module.startswith(PAGE):
        return PAGE
    if module.startswith(FINE_UNITS):
        return nodeid
    backend = re.search(r"\[(sqlite|postgres)\b", nodeid)
    return f"{module}[{backend[1]}]" if backend else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under xdist, a unit's tests go to one worker (scope_of): module-scoped fixtures (a server
    with its own settings, a seeded tenant) are set up once. Units go out longest first (by
    SCOPE_SECONDS), so that the workers end together. (xdist's own `loadgroup` renames node
    ids, which pytest 9.2 no longer allows.)"""
    # Only under xdist, which ships no type information.
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    try:
        seconds: dict[str, float] = json.loads(SCOPE_SECONDS.read_text())
    except (OSError, ValueError):
        seconds = {}

    class ModuleScheduling(LoadScopeScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            if not self.ordered:
                self.ordered = True
                units = sorted(
                    self.workqueue.items(),
                    key=lambda unit: -seconds.get(unit[0], UNKNOWN_TEST_SECONDS * len(unit[1])),
                )
                self.workqueue.clear()
                self.workqueue.update(units)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With --serial=only, a test module that is not in SERIAL_PLACES and marks nothing
    `serial` is not even imported: collecting the whole suite to deselect all but 40 tests cost
    the serial phase seconds."""
    if config.getoption("serial") != "only" or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    try:
        module = collection_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return None
    if module in {place.split("::", 1)[0] for place in SERIAL_PLACES}:
        return None
    return "mark.serial" not in collection_path.read_text(errors="replace") or None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the e2e tier (`pytest -m "not e2e"` is the inner loop) and keeps the serial phase's
    tests (`--serial`)."""
    for item in items:
        if _is_e2e(item):
            item.add_marker(pytest.mark.e2e)
        if item.nodeid.startswith(SERIAL_PLACES):
            item.add_marker(pytest.mark.serial)
    phase = config.getoption("serial")
    if phase != "include":
        wanted = phase == "only"
        keep: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            (keep if (item.get_closest_marker("serial") is not None) == wanted else dropped).append(
                item
            )
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep
