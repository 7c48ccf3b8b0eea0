"""app/web/body_limit.BodyLimit's deadline, driven through the ASGI interface with a client that
sends its body in pieces: a body that does not arrive within max_seconds is a 408 (a client
sending a byte now and then held its connection and task for as long as it liked); one that
arrives in time reaches the app whole."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from app.web.body_limit import BodyLimit

SCOPE = {"type": "http", "path": "/graphql", "headers": [(b"content-length", b"100")]}


class Client:
    """Sends `pieces` of a body, `pause` seconds apart; then waits for the answer."""

    def __init__(self, pieces: list[bytes], pause: float) -> None:
        self.pieces = pieces
        self.pause = pause
        self.sent: list[MutableMapping[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.pieces:
            await asyncio.sleep(3600)  # nothing more to send: only a disconnect would come
        piece = self.pieces.pop(0)
        await asyncio.sleep(self.pause)
        return {"type": "http.request", "body": piece, "more_body": bool(self.pieces)}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message["body"]})


async def test_a_body_that_does_not_arrive_in_time_is_408() -> None:
    client = Client([b"{"] * 100, pause=0.05)
    await asyncio.wait_for(BodyLimit(_app, max_seconds=0.3)(SCOPE, client.receive, client.send), 5)
    start, body = client.sent
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    error = json.loads(body["body"])["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "limit": 0.3}


async def test_a_body_in_pieces_within_the_deadline_reaches_the_app_whole() -> None:
    client = Client([b"ab", b"cd", b"ef"], pause=0.01)
    await asyncio.wait_for(BodyLimit(_app, max_seconds=5)(SCOPE, client.receive, client.send), 5)
    start, body = client.sent
    assert start["status"] == 200 and body["body"] == b"abcdef"
