"""graphql-transport-ws with our connection rules: the token arrives in connection_init
(none: 4401, bad: 4403), a socket holds a bounded number of subscriptions (one more is refused
with a GraphQL error carrying a contract code), and the server pings idle connections."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any

from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

from subscriptions.shared import SharedExecution

log = logging.getLogger(__name__)
PING_INTERVAL = 15.0


class Pinger:
    """Pings every acknowledged connection of the app each PING_INTERVAL: one task for all
    of them (a task per connection cost ~1.3 KB of each idle subscriber)."""

    def __init__(self, interval: float = PING_INTERVAL) -> None:
        self.interval = interval
        self._handlers: weakref.WeakSet[SyncStatusTransportHandler] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def add(self, handler: SyncStatusTransportHandler) -> None:
        self._handlers.add(handler)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="graphql-ws-pinger")

    def discard(self, handler: SyncStatusTransportHandler) -> None:
        self._handlers.discard(handler)

    async def _run(self) -> None:
        while self._handlers:
            await asyncio.sleep(self.interval)
            for handler in list(self._handlers):
                if handler.ping_pending:
                    continue  # the last ping is still waiting on a slow socket
                # A task each, so that one socket that cannot take it stalls nobody.
                send = asyncio.create_task(handler.ping())
                self._sends.add(send)
                send.add_done_callback(self._sends.discard)


def _shared_execution(context: Any) -> SharedExecution | None:
    hub = getattr(getattr(context, "services", None), "hub", None)
    shared = getattr(hub, "shared", None)
    return shared if isinstance(shared, SharedExecution) else None


class SyncStatusTransportHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    ping_pending = False

    @property
    def _pinger(self) -> Pinger | None:
        pinger = getattr(self.view, "pinger", None)
        return pinger if isinstance(pinger, Pinger) else None

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
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._pinger is not None:
            self._pinger.add(self)

    async def handle_subscribe(self, message: Any) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and limit is not None
            and len(self.operations) >= limit
            and message.get("id") not in self.operations
        ):
            await self.send_message(
                {
                    "id": message["id"],
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
        await super().handle_subscribe(message)

    async def send_message(self, message: Any) -> None:
        """A result shared by many subscribers (subscriptions/shared.py) is JSON-encoded once
        for all of them; everything else goes the usual way."""
        payload = message.get("payload") if message.get("type") == "next" else None
        shared = _shared_execution(self.context)
        ws = getattr(self.websocket, "ws", None)
        if (
            not isinstance(payload, dict)
            or payload.keys() != {"data"}
            or shared is None
            or ws is None
        ):
            await super().send_message(message)
            return
        text = (
            f'{{"id":{json.dumps(message["id"])},"type":"next","payload":{{"data":'
            f"{shared.json(payload['data'])}}}}}"
        )
        try:
            await ws.send_text(text)
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error

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
        await super().shutdown()
