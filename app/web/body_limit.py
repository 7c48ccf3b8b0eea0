"""The request body of /graphql is read here, chunk by chunk, and refused with HTTP 413 as soon
as it passes the limit (or its Content-Length says it will): before any token check or parse,
and without ever holding more than the limit in memory. A body that does not arrive within
MAX_BODY_SECONDS is refused with 408: a client sending a byte now and then (slowloris) would
hold its connection and task for as long as it liked."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
# What is read (and dropped) of a refused body before answering, so that a client still
# sending gets the answer instead of a reset connection; past it, answer and close.
MAX_DRAINED_BYTES = 8 * MAX_BODY_BYTES
# 1 MB in 60 s is 17 KB/s: any real client, on any link, sends its query faster.
MAX_BODY_SECONDS = 60.0


async def _drain(receive: Receive, more: bool, seen: int) -> None:
    while more and seen <= MAX_DRAINED_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        more = message.get("more_body", False)


async def _refuse(send: Send, status: int, message: str, limit: float) -> None:
    body = json.dumps(
        {"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT", "limit": limit}}]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        path: str = "/graphql",
        max_seconds: float = MAX_BODY_SECONDS,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.path = path
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        too_large = f"The request body is over {self.max_bytes} bytes."
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "Malformed Content-Length.", self.max_bytes)
                return
            if int(declared) > self.max_bytes:
                if int(declared) <= MAX_DRAINED_BYTES:
                    await _drain(receive, True, 0)
                await _refuse(send, 413, too_large, self.max_bytes)
                return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.max_seconds):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        chunks.clear()
                        await _drain(receive, message.get("more_body", False), size)
                        await _refuse(send, 413, too_large, self.max_bytes)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            slow = f"The request body did not arrive within {self.max_seconds:g} s."
            await _refuse(send, 408, slow, self.max_seconds)
            return
        body: Message | None = {
            "type": "http.request",
            "body": b"".join(chunks),
            "more_body": False,
        }

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()  # only a disconnect can come now

        await self.app(scope, replay, send)
