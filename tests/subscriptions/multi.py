"""Several real API processes on one PostgreSQL database and one broker, for the cross-process
subscription tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import asyncpg

from tests.api import Api
from tests.conftest import Tenant
from tests.server import Server, _run_async, plain_dsn, run_server, throwaway_database


@contextmanager
def postgres_servers(
    count: int, broadcast_url: str | None = None, env: dict[str, str] | None = None
) -> Iterator[list[Server]]:
    """``count`` servers on a throw-away PostgreSQL database (a copy of the migrated template:
    no Alembic run from an empty database); the broker defaults to that database's
    LISTEN/NOTIFY."""
    with throwaway_database("postgres") as database_url, ExitStack() as stack:
        broker = broadcast_url or database_url
        settings = {"SYNCSTATUS_BROADCAST_URL": broker, **(env or {})}
        servers = [
            stack.enter_context(run_server(database_url, env=settings)) for _ in range(count)
        ]
        _unique_tenant_ids(database_url)
        yield servers


def _unique_tenant_ids(database_url: str) -> None:
    """Start tenant ids at a random height: broker channels are named by tenant id, and a
    shared Redis may carry another test run's tenant 1 at the same time."""

    async def restart() -> None:
        conn = await asyncpg.connect(plain_dsn(database_url))
        try:
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('tenants', 'id'), $1)",
                random.randrange(10**6, 10**9),
            )
        finally:
            await conn.close()

    _run_async(restart())


def api_on(server: Server, tenant: Tenant, role: str) -> Api:
    """The tenant's ``role`` caller, connected to ``server`` (tokens live in the shared DB)."""
    return Api(server.graphql_url, server.ws_url, tenant.api(role).token)
