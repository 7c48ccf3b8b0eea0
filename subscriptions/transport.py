"""graphql-transport-ws with our connection rules: the token arrives in connection_init
(none: 4401, bad: 4403; revoked or expired later: closed with 4403), a socket holds a bounded
number of subscriptions (one more is refused with a GraphQL error carrying a contract code),
the server pings idle connections, and a lost broker ends every subscription with an `error`
carrying SERVICE_UNAVAILABLE and closes the socket with 1013 (see subscriptions/hub.py).

A client that stops reading is bounded, then closed. What its subscriptions hold unsent is
bounded by the connection's byte budget (subscriptions/subscriber.py: Backlog; above it, the
latest state per user). A connection whose send has not completed for the send timeout
(SYNCSTATUS_WS_SEND_TIMEOUT) is closed with 4413; as uvicorn writes nothing, not even a close
frame, while a peer does not read, the socket is reset when the close frame does not get
through within CLOSE_GRACE (app/web/ws_protocol.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable, Coroutine
from time import monotonic, perf_counter
from typing import Any

from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

from app.auth.sockets import TokenSockets
from app.auth.tokens import Principal
from app.ops.outage import MESSAGE as OUTAGE_MESSAGE
from app.ops.outage import is_outage
from app.web.settings import Settings
from app.web.ws_protocol import ABORT_EXTENSION, FRAME_EXTENSION
from schema.errors import classify
from schema.library_internals import starlette_websocket
from schema.operation_log import record_operation
from subscriptions.hub import Hub
from subscriptions.live import Documents, LiveOperation, Refused, SubscriberOverflow, plan
from subscriptions.shared import SharedExecution
from subscriptions.subscriber import Backlog

log = logging.getLogger(__name__)
UNAVAILABLE = (
    "The event broker is unreachable, so events may have been missed: refetch, and subscribe again."
)
CLOSE_TIMEOUT = 5.0  # for ending a connection's subscriptions on a socket that reads slowly
SLOW_READER_CODE = 4413  # unused by graphql-transport-ws; 413: too much waits for the client
CLOSE_GRACE = 2.0  # seconds a stuck socket has to take its close frame before it is reset
MIN_TICK = 0.1


class Pinger:
    """Pings every acknowledged connection of the app each `interval` seconds
    (SYNCSTATUS_WS_PING_SECONDS), and closes those whose send has waited longer than their send
    timeout: one task for all of them (a task per connection cost ~1.3 KB of each idle
    subscriber). It looks every quarter of the timeout, so a stuck socket is closed within 1.25
    times it, plus CLOSE_GRACE."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.tick = interval
        self._handlers: weakref.WeakSet[SyncStatusTransportHandler] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def add(self, handler: SyncStatusTransportHandler) -> None:
        self._handlers.add(handler)
        if handler.send_timeout:
            self.tick = min(self.tick, max(MIN_TICK, handler.send_timeout / 4))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="graphql-ws-pinger")

    def discard(self, handler: SyncStatusTransportHandler) -> None:
        self._handlers.discard(handler)

    async def _run(self) -> None:
        next_ping = monotonic() + self.interval
        while self._handlers:
            await asyncio.sleep(max(0.0, min(self.tick, next_ping - monotonic())))
            now = monotonic()
            ping = now >= next_ping
            if ping:
                next_ping = now + self.interval
            for handler in list(self._handlers):
                if handler.stalled(now):
                    self._handlers.discard(handler)
                    self._spawn(handler.close_slow_reader)
                elif ping and not handler.ping_pending:
                    # A pending ping is still waiting on a slow socket: never a second one.
                    self._spawn(handler.ping)

    def _spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # A task each, so that one socket that cannot take it stalls nobody.
        task = asyncio.create_task(work())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)


def _shared_execution(context: Any) -> SharedExecution | None:
    hub = getattr(getattr(context, "services", None), "hub", None)
    shared = getattr(hub, "shared", None)
    return shared if isinstance(shared, SharedExecution) else None


def _sockets(context: Any) -> TokenSockets | None:
    sockets = getattr(getattr(context, "services", None), "sockets", None)
    return sockets if isinstance(sockets, TokenSockets) else None


def _principal(context: Any) -> Principal | None:
    principal = getattr(context, "principal_", None)
    return principal if isinstance(principal, Principal) else None


def _hub(context: Any) -> Hub | None:
    hub = getattr(getattr(context, "services", None), "hub", None)
    return hub if isinstance(hub, Hub) else None


def _settings(context: Any) -> Settings:
    settings = getattr(getattr(context, "services", None), "settings", None)
    return settings if isinstance(settings, Settings) else Settings()


def _abort(websocket: Any) -> Callable[[], None] | None:
    """The server's way to reset the connection (app/web/ws_protocol.py), if it offers one."""
    ws = starlette_websocket(websocket)
    scope = ws.scope if ws is not None else {}
    abort = (scope.get("extensions") or {}).get(ABORT_EXTENSION, {}).get("abort")
    return abort if callable(abort) else None


def _frame_sender(ws: Any) -> Callable[[bytes], Coroutine[Any, Any, bool]] | None:
    """The server's sender of serialized frames (app/web/ws_protocol.py), if it offers one."""
    send = (ws.scope.get("extensions") or {}).get(FRAME_EXTENSION, {}).get("send")
    return send if callable(send) else None


def _frame_writer(ws: Any) -> Callable[[bytes], bool] | None:
    """Its writer of a frame now (False: not written), if it offers one."""
    write = (ws.scope.get("extensions") or {}).get(FRAME_EXTENSION, {}).get("write")
    return write if callable(write) else None


class SyncStatusTransportHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    ping_pending = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live: dict[str, LiveOperation] = {}  # subscriptions served by subscriptions/live.py
        self._ready: dict[str, LiveOperation] = {}  # those with something to send
        # Payloads taken by _write_now and not written: the flusher sends them first.
        self._carried: dict[str, list[Any]] = {}
        self._flusher: asyncio.Task[None] | None = None
        settings = _settings(self.context)
        self.send_timeout = settings.ws_send_timeout
        hub = _hub(self.context)
        self.backlog = (
            Backlog(settings.ws_backlog_bytes, hub.telemetry if hub else None)
            if settings.ws_backlog_bytes
            else None
        )
        self._sending = 0  # sends under way
        self._progress_at = 0.0  # when the last send completed or the first began
        self._closing: asyncio.Task[None] | None = None  # a slow reader's close

    def on_request_accepted(self) -> None:
        super().on_request_accepted()
        task = self.connection_init_timeout_task
        if task is not None:
            task.add_done_callback(self._forget_init_timeout)

    def _forget_init_timeout(self, task: asyncio.Task[None]) -> None:
        # Strawberry keeps the connection_init timeout's task for the socket's life; once
        # connection_init cancels it, that is its CancelledError with the traceback and two
        # frames (~10 of a dashboard's ~150 objects every full collection walks). Ended, it
        # has nothing left for shutdown() to cancel or wait for.
        if self.connection_init_timeout_task is task:
            self.connection_init_timeout_task = None

    @property
    def _pinger(self) -> Pinger | None:
        pinger = getattr(self.view, "pinger", None)
        return pinger if isinstance(pinger, Pinger) else None

    async def handle_message(self, message: Any) -> None:
        """Only messages shaped as graphql-transport-ws says reach the handlers: an object
        with a string type, a string id where one belongs and a subscribe payload with a
        string query; anything else closes the socket with 4400 (Strawberry indexed into it
        and died with a traceback, before the token was even checked)."""
        problem = _malformed(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload") or {}
        has_token = isinstance(payload, dict) and isinstance(
            payload.get("authorization") or payload.get("Authorization"), str
        )
        if not has_token and not self.connection_init_received:
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            self.connection_init_received = True
            await self.websocket.close(code=4401, reason="Unauthorized: token required")
            return
        hub = _hub(self.context)
        if hub is not None and not hub.broker_up and not self.connection_init_received:
            # Subscriptions would miss events until the broker is back: 1013, try again later.
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()
            self.connection_init_received = True
            await self.websocket.close(code=1013, reason="Service unavailable: retry later")
            return
        try:
            await super().handle_connection_init(message)
        except Exception as error:
            if not is_outage(error):
                raise
            # The token could not be checked (the database is down): 1013, try again later.
            log.warning("WebSocket refused during an outage: %r", error)
            await self.websocket.close(code=1013, reason="Service unavailable: retry later")
            return
        if self.connection_acknowledged and self._pinger is not None:
            self._pinger.add(self)
        if self.connection_acknowledged and hub is not None:
            hub.watch(self)
        sockets, principal = _sockets(self.context), _principal(self.context)
        if self.connection_acknowledged and sockets is not None and principal is not None:
            sockets.add(principal, self)

    async def close_forbidden(self, reason: str) -> None:
        """The token was revoked or expired (app.auth.sockets)."""
        try:
            await self.websocket.close(code=4403, reason=reason)
        except Exception as error:  # already closing
            log.debug("socket not closed: %s", error)

    async def handle_subscribe(self, message: Any) -> None:
        # handle_message let through only a well-formed envelope (_malformed).
        limit = self.max_subscriptions_per_connection
        operation_id = message.get("id")
        if (
            self.connection_acknowledged
            and limit is not None
            and len(self.operations) + len(self.live) >= limit
            and operation_id not in self.operations
            and operation_id not in self.live
        ):
            await self.send_message(
                {
                    "id": operation_id,
                    "type": "error",
                    "payload": [
                        {
                            "message": f"At most {limit} subscriptions per connection.",
                            "extensions": {"code": "BAD_USER_INPUT"},
                        }
                    ],
                }
            )
            return
        if operation_id in self.live:
            await self.websocket.close(
                code=4409, reason=f"Subscriber for {operation_id} already exists"
            )
            return
        hub = _hub(self.context)
        if self.connection_acknowledged and hub is not None and not hub.broker_up:
            await self.close_unavailable(operation_id)  # it would miss events
            return
        try:
            if await self._subscribe_live(message):
                return
        except Exception as error:
            if not is_outage(error):
                raise
            # The tenant's event feed could not start (the database or broker is down): tell
            # the client to retry rather than drop the socket.
            log.warning("subscription refused during an outage: %r", error)
            await self.close_unavailable(operation_id, OUTAGE_MESSAGE)
            return
        await super().handle_subscribe(message)

    async def _subscribe_live(self, message: Any) -> bool:
        """Serves the subscription from subscriptions/live.py when it can (see there)."""
        documents = getattr(self.view, "documents", None)
        hub = _hub(self.context)
        operation_id = message.get("id")
        if (
            not self.connection_acknowledged
            or not isinstance(documents, Documents)
            or hub is None
            or not isinstance(operation_id, str)
            or operation_id in self.operations
        ):
            return False
        started = perf_counter()
        found = await plan(documents, hub.shared, self.context, message.get("payload"))
        if found is None:
            return False
        if isinstance(found, Refused):
            error = classify(found.error)
            code = (error.extensions or {}).get("code")
            name = found.operation.name.value if found.operation.name else None
            record_operation(self.context, name, "subscription", code, perf_counter() - started)
            await self.send_message(
                {"id": operation_id, "type": "error", "payload": [error.formatted]}
            )
            return True
        self.live[operation_id] = await LiveOperation.open(
            operation_id, found, hub, self._wake, self.backlog
        )
        name = found.operation.name.value if found.operation.name else None
        record_operation(self.context, name, "subscription", None, perf_counter() - started)
        return True

    def _wake(self, live: LiveOperation) -> None:
        if self._flusher is None and not self._ready and self._write_now(live):
            return
        self._ready[live.id] = live
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    def _write_now(self, live: LiveOperation) -> bool:
        """Writes what ``live`` holds at once, without a task, when nothing else of this
        connection is being sent and each result is there without waiting (shared, done,
        no errors) and its frame fits in the socket's buffer: how most events reach most
        dashboards (a task per connection per event cost more than the send). Returns False
        when the flusher must do (the rest of) it: what was taken and not written is
        carried to it, in order."""
        hub = _hub(self.context)
        documents = getattr(self.view, "documents", None)
        ws = starlette_websocket(self.websocket)
        write = _frame_writer(ws) if ws is not None else None
        if (
            write is None
            or hub is None
            or not isinstance(documents, Documents)
            or self._sending
            or self._closing is not None
            or self.live.get(live.id) is not live
        ):
            return False
        try:
            payloads = live.payloads(hub)
        except SubscriberOverflow:
            return False  # the flusher ends it (the mailbox stays cut off)
        for n, payload in enumerate(payloads):
            try:
                data = live.data_now(payload, hub, documents.schema, self.context)
            except Exception:  # the flusher's execute() reports it as usual
                log.debug("result not ready to write now", exc_info=True)
                data = None
            frame = hub.shared.next_frame(live.id, data) if data is not None else None
            if frame is None or not write(frame):
                self._carried[live.id] = payloads[n:]
                return False
            hub.shared.frames_sent += 1
            self._delivered(live, len(frame), hub)
        return not live.has_more

    async def _flush(self) -> None:
        """Sends what the live subscriptions hold, a user's events at a time from each in
        turn (what waits stays in the bounded mailboxes); ends when they are drained."""
        hub = _hub(self.context)
        # The core schema the view's Documents already hold (live operations exist only with
        # them): read once per flush, not looked up again for every event.
        documents = getattr(self.view, "documents", None)
        schema = documents.schema if isinstance(documents, Documents) else None
        try:
            while self._ready and hub is not None and schema is not None:
                operation_id = next(iter(self._ready))
                live = self._ready.pop(operation_id)
                if self.live.get(operation_id) is not live:
                    self._carried.pop(operation_id, None)
                    continue  # completed, or the connection is closing
                try:
                    carried = self._carried.pop(operation_id, None)
                    payloads = carried if carried is not None else live.payloads(hub)
                except SubscriberOverflow:
                    await self._send_next(live, live.overflow_payload())
                    await self._end(live, hub)
                    continue
                for payload in payloads:
                    if self.live.get(operation_id) is not live:
                        break  # completed meanwhile
                    await self._send_next(
                        live,
                        await live.execute(payload, hub, schema, self.context),
                    )
                if self.live.get(operation_id) is live and live.has_more:
                    self._ready[operation_id] = live  # after the others: each gets its turn
        except (WebSocketDisconnected, WebSocketDisconnect, RuntimeError) as error:
            log.debug("live subscription not sent: %s", error)  # the socket is closing
        except Exception:
            log.exception("live subscriptions of a connection stopped")
        finally:
            self._flusher = None

    async def _send_next(self, live: LiveOperation, payload: dict[str, Any]) -> None:
        size = await self.send_message({"id": live.id, "type": "next", "payload": payload})
        self._delivered(live, size, _hub(self.context))

    @staticmethod
    def _delivered(live: LiveOperation, size: int | None, hub: Hub | None) -> None:
        if size:
            live.measured(size)
        if hub is not None and hub.telemetry is not None:
            hub.telemetry.events_delivered.inc()

    async def _end(self, live: LiveOperation, hub: Hub) -> None:
        if self.live.get(live.id) is live:
            del self.live[live.id]
            await live.close(hub)
            await self.send_message({"id": live.id, "type": "complete"})

    async def close_unavailable(self, operation_id: Any = None, message: str = UNAVAILABLE) -> None:
        """The broker is lost: every subscription (and ``operation_id``, refused) ends with an
        `error` carrying SERVICE_UNAVAILABLE, then the socket closes with 1013, so that any
        client sees it and retries. Never raises."""
        hub = _hub(self.context)
        ids = [*self.live, *self.operations]
        if isinstance(operation_id, str) and operation_id not in ids:
            ids.append(operation_id)
        lives, self.live = list(self.live.values()), {}
        self._ready.clear()
        self._carried.clear()
        try:
            for operation in list(self.operations):
                await self.cleanup_operation(operation)
            for live in lives:
                if hub is not None:
                    await live.close(hub)
            error = {"message": message, "extensions": {"code": "SERVICE_UNAVAILABLE"}}
            async with asyncio.timeout(CLOSE_TIMEOUT):
                for operation in ids:
                    await self.send_message({"id": operation, "type": "error", "payload": [error]})
                await self.websocket.close(code=1013, reason="Service unavailable: retry later")
        except Exception as error:  # already closing, or too slow to read
            log.debug("connection not closed for the broker outage: %r", error)

    async def handle_complete(self, message: Any) -> None:
        live = self.live.pop(message["id"], None)
        if live is None:
            await super().handle_complete(message)
            return
        self._ready.pop(live.id, None)
        self._carried.pop(live.id, None)
        hub = _hub(self.context)
        if hub is not None:
            await live.close(hub)

    async def send_message(self, message: Any) -> int | None:  # type: ignore[override]
        """A result shared by many subscribers (subscriptions/shared.py) is JSON-encoded once
        for all of them (its length returned); everything else goes the usual way. Every send
        is watched: one that makes no progress for the send timeout closes the connection."""
        if self._closing is not None:
            raise WebSocketDisconnected  # closing a slow reader: nothing more is written
        if not self._sending:
            self._progress_at = monotonic()
        self._sending += 1
        try:
            return await self._send(message)
        finally:
            self._sending -= 1
            self._progress_at = monotonic()  # a send completed (or failed): progress

    async def _send(self, message: Any) -> int | None:
        payload = message.get("payload") if message.get("type") == "next" else None
        shared = _shared_execution(self.context)
        ws = starlette_websocket(self.websocket)
        if (
            not isinstance(payload, dict)
            or payload.keys() != {"data"}
            or shared is None
            or ws is None
        ):
            await super().send_message(message)
            return None
        send_frame = _frame_sender(ws)
        if send_frame is not None:
            frame = shared.next_frame(message["id"], payload["data"])
            if not await send_frame(frame):
                raise WebSocketDisconnected
            shared.frames_sent += 1
            return len(frame)
        text = (
            f'{{"id":{json.dumps(message["id"])},"type":"next","payload":{{"data":'
            f"{shared.json(payload['data'])}}}}}"
        )
        try:
            await ws.send_text(text)
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error
        return len(text)

    def stalled(self, now: float) -> bool:
        """A send has been waiting longer than the send timeout, with no other completing."""
        return (
            bool(self._sending and self.send_timeout)
            and self._closing is None
            and now - self._progress_at > self.send_timeout
        )

    async def close_slow_reader(self) -> None:
        """Closes a connection whose client stopped reading (4413), while its sends are blocked:
        its subscriptions are released at once, the close frame gets CLOSE_GRACE to get
        through (a client that reads again then learns why), and then the socket is reset."""
        if self._closing is not None:
            return
        reason = f"Slow reader: nothing could be sent for {self.send_timeout:g} s"
        self._closing = asyncio.current_task()
        log.warning(
            "closing a WebSocket whose client stopped reading (%s): no send completed for %.1f s",
            SLOW_READER_CODE,
            monotonic() - self._progress_at,
        )
        hub = _hub(self.context)
        if hub is not None and hub.telemetry is not None:
            hub.telemetry.slow_reader_closes.inc()
        await self._release_live()
        # Starlette's close: marks the socket closed at once (later sends fail, nothing more
        # is queued behind the close frame), then waits, like every send, for the buffer.
        closing = asyncio.ensure_future(self.websocket.close(code=SLOW_READER_CODE, reason=reason))
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_GRACE)
        if not done:
            abort = _abort(self.websocket)
            if abort is None:
                log.warning("a stuck WebSocket cannot be reset: the server offers no abort")
            else:
                abort()  # the blocked sends and the close then end with a disconnect
        try:
            await closing
        except Exception as error:  # the reset connection
            log.debug("slow reader closed: %r", error)

    async def ping(self) -> None:
        self.ping_pending = True
        try:
            await self.send_message({"type": "ping"})
        except Exception as error:  # a socket closing under the ping: nothing to do
            log.debug("ping not sent: %s", error)
        finally:
            self.ping_pending = False

    async def shutdown(self) -> None:
        if self._pinger is not None:
            self._pinger.discard(self)
        sockets, principal = _sockets(self.context), _principal(self.context)
        if sockets is not None and principal is not None:
            sockets.discard(principal, self)
        hub = _hub(self.context)
        if hub is not None:
            hub.unwatch(self)
        await self._release_live()
        await super().shutdown()

    async def _release_live(self) -> None:
        """Ends the live subscriptions' sending and gives their mailboxes back to the hub."""
        if self._flusher is not None and self._flusher is not asyncio.current_task():
            self._flusher.cancel()
        hub = _hub(self.context)
        lives, self.live = list(self.live.values()), {}
        self._ready.clear()
        self._carried.clear()
        for live in lives:
            if hub is not None:
                await live.close(hub)


def _malformed(message: Any) -> str | None:
    """What is wrong with a message's envelope, or None."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "Invalid message: expected an object with a string type"
    kind = message["type"]
    if kind in ("subscribe", "complete") and not (
        isinstance(message.get("id"), str) and message["id"]
    ):
        return f"Invalid {kind} message: id must be a non-empty string"
    if kind == "subscribe":
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return "Invalid subscribe payload: expected an object with a string query"
        if not _well_formed(payload):
            # As HTTP answers 400; Strawberry would execute it regardless.
            return (
                "Invalid subscribe payload: variables and extensions must be objects and "
                "operationName a string"
            )
    return None


def _well_formed(payload: dict[str, Any]) -> bool:
    variables, extensions = payload.get("variables"), payload.get("extensions")
    name = payload.get("operationName")
    return (
        (variables is None or isinstance(variables, dict))
        and (extensions is None or isinstance(extensions, dict))
        and (name is None or isinstance(name, str))
    )
