"""One log line per HTTP request and per WebSocket connection (when it closes), with a request
id: the client's X-Request-ID when well formed, else a new one; echoed in the response.

The record of the request in flight is in a context variable, so the GraphQL layer can add
the operation, tenant and outcome to it, and an unexpected error can carry the id. Headers,
query strings and bodies are never logged: tokens travel in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ops.outage import RETRY_AFTER_SECONDS
from app.ops.telemetry import Telemetry

log = logging.getLogger("syncstatus.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
OPERATION_NAME = re.compile(r"[^A-Za-z0-9_]")
MAX_OPERATION_NAME = 64
MAX_PATH = 200
_STOPPING = json.dumps(
    {
        "errors": [
            {
                "message": "The server is stopping; retry the request.",
                "extensions": {"code": "SERVICE_UNAVAILABLE"},
            }
        ]
    }
).encode()


# The message of uvicorn's cancel at the end of its graceful shutdown (uvicorn/server.py);
# tests/ops/test_cut_off_at_shutdown.py fails if an upgrade changes it.
UVICORN_SHUTDOWN_CANCEL = "timeout graceful shutdown exceeded"


def _shutdown_cancel(cancelled: asyncio.CancelledError) -> bool:
    return any(UVICORN_SHUTDOWN_CANCEL in str(arg) for arg in cancelled.args)


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    status: int | None = None
    operation_name: str | None = None
    operation_type: str | None = None
    tenant: int | None = None
    outcome: str | None = None
    operations: int = 0

    def operation(self, name: str | None, kind: str | None, tenant: int | None, code: str | None):
        """A GraphQL operation ran in this request (or on this connection)."""
        self.operations += 1
        self.operation_name = clean_operation_name(name)
        self.operation_type = kind
        if tenant is not None:
            self.tenant = tenant
        # The first error code a connection met stays its outcome.
        if code is not None or self.outcome is None:
            self.outcome = code or "ok"


_current: ContextVar[RequestRecord | None] = ContextVar("request", default=None)


def current_request() -> RequestRecord | None:
    return _current.get()


@contextmanager
def serving(record: RequestRecord) -> Iterator[RequestRecord]:
    """The request in flight for the block (the middleware's; tests use it directly)."""
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


def clean_operation_name(name: str | None) -> str | None:
    """A client's operation name, as a log field: identifier characters, truncated."""
    if not name:
        return None
    return OPERATION_NAME.sub("_", name[:MAX_OPERATION_NAME])


def request_id_from(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            candidate = value.decode("latin-1")
            if REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestLog:
    def __init__(self, app: ASGIApp, telemetry: Telemetry | None = None) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        record = RequestRecord(
            request_id=request_id,
            method=scope.get("method", "WS") if kind == "http" else "WS",
            path=str(scope.get("path", ""))[:MAX_PATH],
        )
        header = (b"x-request-id", request_id.encode("ascii"))
        started = perf_counter()
        accepted = False

        async def logged_send(message: Message) -> None:
            nonlocal accepted
            kind = message["type"]
            if kind in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", []), header]}
                if kind == "http.response.start":
                    record.status = message["status"]
                else:
                    accepted = True
                    if self.telemetry is not None:
                        self.telemetry.websockets.inc()
            elif kind == "websocket.close":
                # Closed before it was accepted, the handshake is refused: HTTP 403 (ASGI).
                record.status = message.get("code", 1000) if accepted else 403
            elif kind == "websocket.http.response.start":  # a refusal with a body
                record.status = message["status"]
            await send(message)

        async def logged_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect" and record.status is None:
                record.status = message.get("code", 1005)
            return message

        try:
            with serving(record):
                await self.app(scope, logged_receive, logged_send)
        except BaseException as error:
            # uvicorn cancels the requests still running when its graceful shutdown ends.
            # Re-raised, it logs that as an "Exception in ASGI application" traceback and
            # answers 500 to a request that did nothing wrong. Any other cancellation (a
            # caller's timeout around an in-process app) goes on as before.
            if not (isinstance(error, asyncio.CancelledError) and _shutdown_cancel(error)):
                if record.status is None:
                    record.status = 500
                raise
            await self._stopped(kind, record, send)
        finally:
            seconds = perf_counter() - started
            if kind == "websocket" and accepted and self.telemetry is not None:
                self.telemetry.websockets.dec()
            self._log(record, seconds)
            if self.telemetry is not None:
                self.telemetry.http_request(
                    _route_template(scope), record.method, record.status or 0, seconds
                )

    @staticmethod
    async def _stopped(kind: str, record: RequestRecord, send: Send) -> None:
        """A request cut off because the server stops: a 503 with Retry-After if its answer
        had not started (what a proxy or client retries elsewhere), and one warning."""
        log.warning(
            "%s cut off: the server stopped before it finished",
            "request" if kind == "http" else "websocket",
            extra={"request_id": record.request_id},
        )
        record.outcome = "SERVICE_UNAVAILABLE"
        if kind != "http" or record.status is not None:
            return  # a started answer can only be cut short, a socket only closed
        record.status = 503
        with contextlib.suppress(Exception):  # the client may be gone
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_STOPPING)).encode()),
                        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                        (b"connection", b"close"),
                        (b"x-request-id", record.request_id.encode("ascii")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _STOPPING})

    @staticmethod
    def _log(record: RequestRecord, seconds: float) -> None:
        fields: dict[str, Any] = {
            "request_id": record.request_id,
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "duration_ms": round(seconds * 1000, 2),
            "operation_name": record.operation_name,
            "operation_type": record.operation_type,
            "tenant": record.tenant,
            "outcome": record.outcome,
        }
        if record.method == "WS":
            fields["operations"] = record.operations
        what = "websocket closed" if record.method == "WS" else "request"
        log.info(what, extra=fields)
