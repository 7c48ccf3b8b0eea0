"""The app in this process: app.web.asgi.create_app on a test database, its lifespan run by
asgi-lifespan and its HTTP side reached through httpx's ASGI transport, with no socket and no
server process. It stands in for tests.server.Server wherever a test needs only GraphQL over
HTTP: same `database_url`, `graphql_url`, `token()`, `api()` and `log()`."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from asgi_lifespan import LifespanManager

from app.store.engine import is_sqlite
from app.web.asgi import create_app
from app.web.settings import Settings
from tests.api import Api
from tests.server import create_token, migrate

BASE_URL = "http://syncstatus.test"
STARTUP_SECONDS = 120  # SQLite migrates itself at start, which is slow on a loaded machine


@dataclass
class AppServer:
    database_url: str
    transport: httpx.ASGITransport
    _log: io.StringIO

    url = BASE_URL
    graphql_url = f"{BASE_URL}/graphql"
    ws_url = "ws://syncstatus.test/graphql"  # no socket: Api.websocket() refuses

    def token(self, tenant: str, role: str) -> str:
        return create_token(self.database_url, tenant, role)

    def api(self, token: str | None) -> Api:
        return Api(self.graphql_url, self.ws_url, token, http_transport=self.transport)

    def http(self) -> httpx.AsyncClient:
        """A raw HTTP client of the app (for status codes and headers)."""
        return httpx.AsyncClient(transport=self.transport, base_url=self.url, timeout=60)

    def log(self) -> str:
        return self._log.getvalue()


@asynccontextmanager
async def running_app(database_url: str) -> AsyncIterator[AppServer]:
    """The app serving `database_url` (migrated first, as `syncstatus db upgrade` would on
    PostgreSQL) with the in-process broadcast, until the block ends."""
    if not is_sqlite(database_url):
        migrate(database_url)
    # As run_server: tests share tokens across many requests, so no per-token cost budget.
    settings = Settings(database_url=database_url, log_level="warning", rate_limit=0)
    app = create_app(settings)
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger()
    logger.addHandler(handler)
    try:
        async with LifespanManager(
            app, startup_timeout=STARTUP_SECONDS, shutdown_timeout=60
        ) as manager:
            yield AppServer(database_url, httpx.ASGITransport(app=manager.app), captured)
    finally:
        logger.removeHandler(handler)
