"""The ASGI application: the one module of app/ that wires GraphQL, subscriptions and the page
together. Resources are created in the lifespan and handed to requests as typed state."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from app.auth import Authenticator
from app.broadcast import create_broadcast, max_message_bytes
from app.browser_security import allowed_origins, browser_middleware, frame_ancestors
from app.context import Context
from app.db.engine import is_sqlite, open_database
from app.errors import ServiceError
from app.events import Publisher
from app.graphiql import GraphiQLAssets
from app.migrate import upgrade
from app.process_stats import process_stats
from app.runtime import COLLECTOR, freeze_startup_heap, tune_collector
from app.secret_box import load_secret_box
from app.services import Services
from app.settings import Settings
from app.simulator import running_simulator
from app.tasks import cancel_and_wait
from app.timing import ServerTiming
from app.token_revocations import listening as revocations_applied
from app.webhook_deliverer import start_deliverer
from app.webhook_settings import WebhookSettings
from schema.schema import MAX_DEPTH, MAX_TOKENS, build_schema
from subscriptions.hub import Hub
from subscriptions.live import Documents
from subscriptions.transport import Pinger, SyncStatusTransportHandler

log = logging.getLogger("syncstatus")
STATIC = Path(__file__).with_name("static")
MAX_SUBSCRIPTIONS_PER_CONNECTION = 20


class SyncStatusGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = SyncStatusTransportHandler

    graphiql = GraphiQLAssets()

    def __init__(self, services_ref: dict[str, Services]) -> None:
        super().__init__(
            build_schema(),
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),  # legacy graphql-ws off
            connection_init_wait_timeout=timedelta(seconds=5),
            max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
        )
        self._services_ref = services_ref
        # Subscriptions served without strawberry's per-subscription task (subscriptions/live.py).
        self.documents = Documents(self.schema._schema, MAX_TOKENS, MAX_DEPTH)
        self.pinger = Pinger()  # graphql-transport-ws pings of all this app's sockets

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return Context(
            services=self._services_ref["services"],
            request=request,
            websocket=request.scope["type"] == "websocket",
        )

    async def render_graphql_ide(self, request: Any) -> Response:
        """Our own GraphiQL page: assets from this service, no inline script (the CSP)."""
        return self.graphiql.page()

    async def on_ws_connect(self, context: Context) -> None:
        try:
            context.principal_ = await context.services.authenticator.authenticate(context.bearer())
        except ServiceError:
            raise ConnectionRejectionError from None

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """A request strawberry refuses before GraphQL (not JSON, no query, unknown operation,
        mutation over GET...) still gets a GraphQL error with a contract code, not plain text."""
        try:
            return await super().run(request, context, root_value)
        except HTTPException as error:
            if request.scope["type"] == "websocket":
                raise
            body = {
                "data": None,
                "errors": [{"message": error.reason, "extensions": {"code": "BAD_USER_INPUT"}}],
            }
            return JSONResponse(body, status_code=error.status_code)

    def decode_json(self, data: str | bytes) -> object:
        """The body (or a GET parameter) must be a JSON object, or a list for a batch:
        anything else, or bytes that are not UTF-8, is a bad request (strawberry: a 500)."""
        try:
            value = json.loads(data)
        except UnicodeDecodeError:
            raise HTTPException(400, "The request body is not UTF-8.") from None
        if not isinstance(value, dict | list):
            raise HTTPException(400, "Expected a JSON object.")
        return value


def _simulation(services: Services, simulate: bool) -> AbstractAsyncContextManager[object]:
    """Simulated sync workers in this process (`syncstatus demo`), or nothing."""
    if not simulate:
        return nullcontext()
    return running_simulator(services.db, services.publisher)


def create_app(settings: Settings | None = None, *, simulate: bool = False) -> Starlette:
    settings = settings or Settings.from_env()
    ref: dict[str, Services] = {}
    graphql = SyncStatusGraphQL(ref)
    # WebSocket handshakes from another origin: the same allowlist as CORS.
    origins = allowed_origins(settings.cors_origins)
    graphql.allowed_origins = origins
    graphql.graphiql = GraphiQLAssets(settings.graphiql_dir)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if is_sqlite(settings.database_url):
            # The embedded default migrates itself; PostgreSQL deployments run `db upgrade`.
            await asyncio.to_thread(upgrade, settings.database_url)
        db = open_database(settings.database_url)
        broadcast = create_broadcast(settings.broadcast_url)
        try:
            async with broadcast:
                services = Services(
                    settings=settings,
                    db=db,
                    broadcast=broadcast,
                    publisher=Publisher(broadcast, max_message_bytes(broadcast)),
                    authenticator=Authenticator(db),
                )
                services.hub = Hub(broadcast, db)
                services.secret_box = load_secret_box(settings.database_url)
                services.webhook_settings = WebhookSettings.from_env()
                services.deliverer, delivering = start_deliverer(
                    db, services.secret_box, services.webhook_settings
                )
                ref["services"] = services
                freeze_startup_heap()
                tune_collector()
                try:
                    async with revocations_applied(services), _simulation(services, simulate):
                        yield {"services": services}
                finally:
                    await cancel_and_wait(delivering)
                    await services.hub.close()
                    await services.authenticator.close()
                    COLLECTOR.uninstall()
        finally:
            await db.dispose()

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def docs(_request: Request) -> Response:
        return FileResponse(STATIC / "docs.html")

    async def health(_request: Request) -> Response:
        hub = ref["services"].hub if "services" in ref else None
        return JSONResponse(
            {
                "ok": True,
                "subscriptions": hub.stats() if hub else {},
                "process": process_stats(),
            }
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/docs", docs),
            Route("/healthz", health),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/graphiql-assets/{name}", graphql.graphiql.asset),
            WebSocketRoute("/graphql", graphql),
            Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ],
        middleware=[
            *browser_middleware(origins, frame_ancestors(settings.frame_ancestors)),
            Middleware(ServerTiming),
        ],
        lifespan=lifespan,
    )
