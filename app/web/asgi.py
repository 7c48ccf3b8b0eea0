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
from starlette.routing import Match, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from app.auth.rate_limit import RateLimiter
from app.auth.revocations import listening as revocations_applied
from app.auth.tokens import Authenticator
from app.demo.simulator import running_simulator
from app.domain.errors import ServiceError
from app.events import event_log
from app.events.broker import create_broadcast, max_message_bytes
from app.events.messages import Publisher
from app.ops.outage import RETRY_AFTER_SECONDS
from app.ops.probes import Readiness, ready
from app.ops.process_stats import process_stats
from app.ops.request_log import RequestLog, current_request
from app.ops.retention import running_pruner
from app.ops.run_reaper import running_reaper
from app.ops.runtime import freeze_startup_heap, tune_collector
from app.ops.tasks import cancel_and_wait
from app.ops.telemetry import CONTENT_TYPE as METRICS_CONTENT_TYPE
from app.ops.telemetry import Telemetry
from app.ops.timing import ServerTiming
from app.store.engine import Database, is_sqlite, open_database
from app.store.schema_version import schema_problem, upgrade_if_behind
from app.web.body_limit import BodyLimit
from app.web.browser_security import allowed_origins, browser_middleware, frame_ancestors
from app.web.context import Context
from app.web.csv_export import export_sync_users
from app.web.graphiql import GraphiQLAssets
from app.web.services import AppState, Services, services_of
from app.web.settings import DEFAULT_WS_INIT_TIMEOUT_SECONDS, DEFAULT_WS_PING_SECONDS, Settings
from app.webhooks.deliverer import start_deliverer
from app.webhooks.secret_box import load_secret_box
from app.webhooks.settings import WebhookSettings
from schema.http_status import (
    GRAPHQL_RESPONSE_JSON,
    error_body,
    response_status,
    wants_graphql_response,
)
from schema.limits import DocumentLimits
from schema.persisted_queries import PersistedQueries, PersistedQueryError
from schema.schema import build_schema
from subscriptions.hub import Hub
from subscriptions.live import Documents
from subscriptions.transport import Pinger, SyncStatusTransportHandler

log = logging.getLogger("syncstatus")
STATIC = Path(__file__).with_name("static")
MAX_SUBSCRIPTIONS_PER_CONNECTION = 20


class SyncStatusGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = SyncStatusTransportHandler

    graphiql = GraphiQLAssets()

    def __init__(
        self,
        limits: DocumentLimits | None = None,
        *,
        init_timeout_seconds: float = DEFAULT_WS_INIT_TIMEOUT_SECONDS,
        ping_seconds: float = DEFAULT_WS_PING_SECONDS,
    ) -> None:
        limits = limits or DocumentLimits()
        schema = build_schema(limits)
        super().__init__(
            schema,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),  # legacy graphql-ws off
            connection_init_wait_timeout=timedelta(seconds=init_timeout_seconds),
            max_subscriptions_per_connection=MAX_SUBSCRIPTIONS_PER_CONNECTION,
        )
        # Subscriptions served without strawberry's per-subscription task (subscriptions/live.py).
        self.documents = Documents(schema)
        self.persisted = PersistedQueries(limits)  # Apollo's automatic persisted queries
        # graphql-transport-ws pings of all this app's sockets
        self.pinger = Pinger(ping_seconds)

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return Context(
            services=services_of(request),
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
        except (HTTPException, PersistedQueryError) as error:
            if request.scope["type"] == "websocket":
                raise
            record = current_request()
            if record is not None:
                record.outcome = "BAD_USER_INPUT"
            # No services: the app's lifespan has not run (unit tests).
            services: Services | None = getattr(request.state, "services", None)
            if services is not None and services.telemetry is not None:
                services.telemetry.operation(None, "BAD_USER_INPUT", 0.0)
            if isinstance(error, PersistedQueryError):
                # 200, as Apollo's servers answer: its clients then send the document.
                reason, code, status = error.message, error.code, 200
            else:
                reason, code, status = error.reason, "BAD_USER_INPUT", error.status_code
            wanted = wants_graphql_response(request.headers.get("accept"))
            return JSONResponse(
                error_body(reason, code, with_data=not wanted),
                status_code=status,
                media_type=GRAPHQL_RESPONSE_JSON if wanted else "application/json",
            )

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET with a persisted query's hash and no document is an operation, not a browser.
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):
            data.query = self.persisted.resolve(data.query, data.extensions)
        return data

    async def get_sub_response(self, request: Any) -> Response:
        sub_response = await super().get_sub_response(request)
        request.state.sub_response = sub_response  # process_result sets status and headers
        return sub_response

    async def process_result(self, request: Any, result: Any) -> Any:
        """Status code, content type and headers as the GraphQL-over-HTTP spec says
        (schema/http_status.py); the body keeps its usual shape."""
        body = await super().process_result(request, result)
        sub_response = getattr(request.state, "sub_response", None)
        if sub_response is None:
            return body
        wanted = wants_graphql_response(request.headers.get("accept"))
        status, headers, request_error = response_status(result, graphql_response=wanted)
        if status != 200:
            sub_response.status_code = status
        for name, value in headers.items():
            sub_response.headers[name] = value
        if wanted:
            sub_response.headers["content-type"] = GRAPHQL_RESPONSE_JSON
            if request_error:
                body.pop("data", None)  # nothing ran
        return body

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        # As strawberry's, with the content type the request asked for (process_result).
        response = Response(self.encode_json(response_data), status_code=200)
        if "content-type" not in sub_response.headers:
            response.headers["content-type"] = "application/json"
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return self._outage_status(response_data, response)

    def _outage_status(self, response_data: Any, response: Response) -> Response:
        """An outage (database or broker unreachable) is HTTP 503 with Retry-After, so clients
        and proxies know to retry, rather than a 200 carrying the error."""
        results = response_data if isinstance(response_data, list) else [response_data]
        if any(
            (error.get("extensions") or {}).get("code") == "SERVICE_UNAVAILABLE"
            for result in results
            for error in result.get("errors") or ()
        ):
            response.status_code = 503
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def decode_json(self, data: str | bytes) -> object:
        """The body (or a GET parameter, or a WebSocket message) must be a JSON object, or a
        list for a batch: anything else, bytes that are not UTF-8, JSON nested too deeply or a
        number too long to decode is a bad request (strawberry: a 500). As decode errors they
        are a 400 over HTTP and a 4400 close on a WebSocket, as bad JSON is."""
        try:
            value = json.loads(data)
        except UnicodeDecodeError:
            raise HTTPException(400, "The request body is not UTF-8.") from None
        except json.JSONDecodeError:
            raise
        except RecursionError:
            # Nesting past the interpreter's limit (~1,000 levels).
            raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None
        except ValueError:
            # An integer of more than 4,300 digits (the interpreter's conversion limit).
            raise json.JSONDecodeError("JSON number too long", "", 0) from None
        if not isinstance(value, dict | list):
            raise json.JSONDecodeError("Expected a JSON object", "", 0)
        return value


class SyncStatusApp(Starlette):
    """Starlette, with the WebSocket of /graphql handed straight to its request log and GraphQL.

    Every open dashboard is a suspended coroutine chain for as long as it stays open, and
    Starlette's stack would add a frame for each layer (error and exception middleware, the
    HTTP-only middleware that pass WebSockets through, the router and the route: ~3.5 KB a
    dashboard), and a wrapper around every send. The route still matches (its own matches()),
    and the scope gets what the router would have set."""

    def __init__(self, *, websocket: ASGIApp, websocket_route: WebSocketRoute, **kwargs: Any):
        super().__init__(**kwargs)
        self._websocket = websocket
        self._websocket_route = websocket_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            match, child_scope = self._websocket_route.matches(scope)
            if match is Match.FULL:
                scope["app"] = self
                scope["router"] = self.router
                scope["route"] = self._websocket_route
                scope.update(child_scope)
                await self._websocket(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _simulation(
    services: Services, simulate: bool, speed: float
) -> AbstractAsyncContextManager[object]:
    """Simulated sync workers in this process (`syncstatus demo`), or nothing."""
    if not simulate:
        return nullcontext()
    return running_simulator(services.db, services.publisher, speed=speed)


def _event_log_pruner(
    db: Database, settings: Settings, logged: bool
) -> AbstractAsyncContextManager[None]:
    if not logged:
        return nullcontext()
    return event_log.running_pruner(db, settings.event_log_seconds)


def _rate_limiter(settings: Settings) -> RateLimiter:
    """Budgets shared through Redis when the broker is Redis; else this process's own."""
    url = settings.broadcast_url
    return RateLimiter(settings.rate_limit, url if url.startswith("redis://") else None)


class SchemaBehind(RuntimeError):
    """The PostgreSQL schema is older than this code: `syncstatus db upgrade` first."""


def create_app(
    settings: Settings | None = None, *, simulate: bool = False, simulation_speed: float = 1.0
) -> Starlette:
    settings = settings or Settings.from_env()
    graphql = SyncStatusGraphQL(
        DocumentLimits(max_cost=settings.max_query_cost),
        init_timeout_seconds=settings.ws_init_timeout_seconds,
        ping_seconds=settings.ws_ping_seconds,
    )
    # WebSocket handshakes from another origin: the same allowlist as CORS.
    origins = allowed_origins(settings.cors_origins)
    graphql.allowed_origins = origins
    graphql.graphiql = GraphiQLAssets(settings.graphiql_dir)
    telemetry = Telemetry(sqlite=is_sqlite(settings.database_url))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[AppState]:
        db = open_database(settings.database_url, timeout=settings.database_timeout_seconds)
        if db.sqlite_writer is not None and telemetry.sqlite_writer_wait is not None:
            db.sqlite_writer.on_wait = telemetry.sqlite_writer_wait.observe
        broadcast = create_broadcast(settings.broadcast_url)
        backend = getattr(broadcast, "backend", None)
        # The event log, for brokers that can lose a message (app.events.event_log); the
        # in-memory one (one process) cannot.
        logged = not settings.broadcast_url.startswith("memory:")
        try:
            if is_sqlite(settings.database_url):
                # The embedded default migrates itself (Alembic only when the schema is behind:
                # it costs a start 0.5-1.5 s of CPU to find nothing to do); PostgreSQL
                # deployments run `db upgrade`.
                await upgrade_if_behind(db)
            else:
                problem = await schema_problem(db)
                if problem is not None:
                    raise SchemaBehind(problem)
            async with broadcast:
                services = Services(
                    settings=settings,
                    db=db,
                    broadcast=broadcast,
                    publisher=Publisher(
                        broadcast,
                        max_message_bytes(broadcast),
                        telemetry,
                        event_log=logged,
                    ),
                    authenticator=Authenticator(db),
                    telemetry=telemetry,
                )
                services.hub = Hub(
                    broadcast, db, telemetry, replay=logged, grace=settings.broker_grace_seconds
                )
                if backend is not None and hasattr(backend, "on_disconnect"):
                    # A lost broker ends every subscription explicitly (subscriptions/hub.py).
                    backend.on_disconnect = services.hub.broker_lost
                    backend.on_reconnect = services.hub.broker_back
                if backend is not None and hasattr(backend, "on_publish_retry"):
                    backend.on_publish_retry = telemetry.publish_retries.inc
                services.rate_limiter = _rate_limiter(settings)
                services.secret_box = load_secret_box(settings.database_url)
                services.webhook_settings = WebhookSettings.from_env()
                services.deliverer, delivering = start_deliverer(
                    db,
                    services.secret_box,
                    services.webhook_settings,
                    lambda outcome: telemetry.webhook_attempts.labels(outcome).inc(),
                )
                freeze_startup_heap()
                tune_collector(services.collector)
                try:
                    async with (
                        revocations_applied(services),
                        _simulation(services, simulate, simulation_speed),
                        running_pruner(db, settings.retention_days, telemetry),
                        running_reaper(
                            db,
                            services.publisher,
                            settings.run_timeout_seconds,
                            telemetry,
                            services.deliverer.poke,
                        ),
                        _event_log_pruner(db, settings, logged),
                    ):
                        yield AppState(services=services, readiness=Readiness(db, broadcast))
                finally:
                    await cancel_and_wait(delivering)
                    await services.hub.close()
                    await services.rate_limiter.close()
                    await services.authenticator.close()
                    services.collector.uninstall()
        finally:
            await db.dispose()
            telemetry.worker_exits()

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def docs(_request: Request) -> Response:
        return FileResponse(STATIC / "docs.html")

    async def health(request: Request) -> Response:
        services = services_of(request)
        hub = services.hub
        return JSONResponse(
            {
                "ok": True,
                "subscriptions": hub.stats() if hub else {},
                "process": process_stats(services.collector),
            }
        )

    async def livez(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        readiness: Readiness | None = getattr(request.state, "readiness", None)
        if readiness is None:  # no lifespan state: the app has not started
            checks = {"startup": {"ok": False, "error": "the app is starting or stopping"}}
        else:
            checks = await readiness.checks()
        failing = [name for name, check in checks.items() if not check["ok"]]
        body = {"ok": not failing, "checks": checks, "failing": failing}
        return JSONResponse(body, status_code=200 if ready(checks) else 503)

    async def metrics(_request: Request) -> Response:
        body = await asyncio.to_thread(telemetry.exposition)
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    graphql_socket = WebSocketRoute("/graphql", graphql)
    return SyncStatusApp(
        # The WebSocket's only middleware: the others act on HTTP alone.
        websocket=RequestLog(graphql, telemetry=telemetry),
        websocket_route=graphql_socket,
        routes=[
            Route("/", index),
            Route("/docs", docs),
            Route("/healthz", health),
            Route("/livez", livez),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/export/sync-users.csv", export_sync_users),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/graphiql-assets/{name}", graphql.graphiql.asset),
            graphql_socket,
            Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ],
        middleware=[
            Middleware(RequestLog, telemetry=telemetry),
            *browser_middleware(origins, frame_ancestors(settings.frame_ancestors)),
            Middleware(ServerTiming),
            Middleware(BodyLimit),
        ],
        lifespan=lifespan,
    )


def create_app_from_env() -> Starlette:
    """The factory `serve --workers N` names to uvicorn: each worker builds its own app."""
    return create_app(Settings.from_env())
