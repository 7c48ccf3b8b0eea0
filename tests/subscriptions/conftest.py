"""Subscription tests run against one real server on SQLite with the in-process broadcast;
the cross-process tests start their own servers on Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Tenant
from tests.server import Server, run_server, sqlite_database

_counter = iter(range(1_000_000))


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    with sqlite_database() as url, run_server(url) as running:
        yield running


@pytest.fixture
def tenant(server: Server, request: pytest.FixtureRequest) -> Tenant:
    return Tenant(server, f"sub{next(_counter)}-{request.node.name[:40]}")


@pytest.fixture
def other_tenant(server: Server) -> Tenant:
    return Tenant(server, f"sub-other{next(_counter)}")
