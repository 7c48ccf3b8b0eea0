"""graphql-transport-ws with our connection rules: the token arrives in connection_init
(none: 4401, bad: 4403), a socket holds a bounded number of subscriptions (one more is refused
with a GraphQL error carrying a contract code), and the server pings idle connections."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

PING_INTERVAL = 15.0


class SyncStatusTransportHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    _pinger: asyncio.Task[None] | None = None

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
        if self.connection_acknowledged and self._pinger is None:
            self._pinger = asyncio.create_task(self._ping())

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

    async def _ping(self) -> None:
        with suppress(Exception):
            while True:
                await asyncio.sleep(PING_INTERVAL)
                await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with suppress(asyncio.CancelledError):
                await self._pinger
        await super().shutdown()
