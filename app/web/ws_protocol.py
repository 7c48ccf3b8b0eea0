"""uvicorn's WebSocket protocol, plus a way for the app to drop a connection that stopped reading.

uvicorn writes every message, the close frame included, only once the transport's buffer fell
below its high-water mark, and transport.close() waits for that buffer to drain. A peer that
never reads therefore blocks every send and every close forever, and its socket with its kernel
buffers stays open. This protocol puts ``abort`` (asyncio's Transport.abort: drop the buffers,
reset the connection) in the scope's extensions under ABORT_EXTENSION, for the app to call
when a graceful close cannot get through (subscriptions/transport.py). It also aborts a
connection that uvicorn's own keepalive gave up on but could not close, and lets go of the
handshake's request and response once the connection is accepted (uvicorn keeps both for the
connection's life, ~5 KB of headers per open dashboard; nothing reads them after the accept).
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import suppress
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

ABORT_EXTENSION = "syncstatus.abort"
# Sends a text frame already serialized (websockets.frames.Frame.serialize, unmasked): a result
# shared by many dashboards is encoded once, and each socket only writes its bytes.
FRAME_EXTENSION = "syncstatus.frame"
ABORT_AFTER_KEEPALIVE = 5.0  # seconds a keepalive close may take to flush before the reset
# The kernel's send buffer of a WebSocket (it books twice this). Left to autotuning it grows to
# tcp_wmem's maximum (~2.8 MB measured) before a peer that does not read blocks a send: memory
# that stays held until the close, and seconds of CPU spent writing what nobody reads (20
# stuck sockets: 56 MB, ~8 s). A dashboard's updates are small: this still carries 2.5 MB/s
# at 100 ms of round trip.
SEND_BUFFER_BYTES = 256 * 1024


class _Inbox:
    """uvicorn's queue of received messages (put_nowait, get, empty), without asyncio.Queue's
    three deques (~2.3 KB an idle socket): a list, and a future only while the app waits."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            waiters = self._waiters if self._waiters is not None else []
            self._waiters = waiters
            waiters.append(waiter)
            try:
                await waiter
            finally:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None
        return self._items.pop(0)


class _Writable:
    """uvicorn's `writable` (set, clear, is_set, wait) without asyncio.Event's deque (~0.8 KB
    an idle socket): the transport's flow control, waited on only by blocked sends."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """What `serve` runs for WebSockets (uvicorn's `ws` option): uvicorn's default with
    websockets installed, plus the abort extension."""

    _abortable: asyncio.WriteTransport | None = None
    _lost = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lighter stand-ins for the two asyncio objects uvicorn keeps per socket: the same
        # methods it calls (tests/unit/test_library_internals.py checks which).
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # uvloop's transports have asyncio's interface without deriving from its classes.
        self._abortable = cast(asyncio.WriteTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        super().connection_lost(exc)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # set when the handshake is accepted
        if scope is not None:
            scope["extensions"][ABORT_EXTENSION] = {"abort": self.abort}
            if not self.conn.extensions:  # frames as they are (per-message deflate is off)
                scope["extensions"][FRAME_EXTENSION] = {
                    "send": self.send_frame,
                    "write": self.write_frame,
                }

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The 101 is written: the handshake's objects are garbage from here on. The request
            # stays referenced by websockets' parser (a local of its suspended generator, for
            # the connection's life): its headers (~2.6 KB a dashboard) are emptied instead.
            if self.request is not None:
                self.request.headers.clear()
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    async def send_frame(self, frame: bytes) -> bool:
        """Writes a serialized frame as uvicorn's send writes a text message: once the buffer
        is below its high-water mark, and only on an open connection (False: not sent, the
        connection is closing or closed)."""
        if not self.writable.is_set():
            await self.writable.wait()
        return self.write_frame(frame)

    def write_frame(self, frame: bytes) -> bool:
        """Writes a serialized frame now if the connection is open and its buffer below the
        high-water mark; else writes nothing and returns False."""
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or self.conn.state is not State.OPEN
        ):
            return False
        self.transport.write(frame)
        return True

    def abort(self) -> None:
        """Resets the connection now, whatever waits in its buffers."""
        if self._abortable is not None and not self._lost:
            self._abortable.abort()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # a close frame, then a close that waits for the buffer
        asyncio.get_running_loop().call_later(ABORT_AFTER_KEEPALIVE, self.abort)
