"""The open WebSockets of this process per API token, so that the sockets of a revoked token
close at once (code 4403), and those of an expiring token close when it expires."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from app.auth.tokens import Principal
from app.domain.timeutil import MICROS_PER_SECOND, now_micros

log = logging.getLogger(__name__)
MAX_REVOKED_REMEMBERED = 10_000


class TokenSocket(Protocol):
    async def close_forbidden(self, reason: str) -> None:
        """Closes the connection with 4403; must not raise."""
        ...


class TokenSockets:
    def __init__(self) -> None:
        self._by_token: dict[int, set[TokenSocket]] = {}
        self._expiry: dict[TokenSocket, asyncio.TimerHandle] = {}
        # Revoked while a socket of it was between authentication and add(): it closes at once.
        self._revoked: dict[int, None] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, principal: Principal, socket: TokenSocket) -> None:
        token_id = principal.token_id
        if token_id in self._revoked:
            self._close(socket, "Forbidden: the token was revoked")
            return
        self._by_token.setdefault(token_id, set()).add(socket)
        if principal.expires_at is not None:
            self._close_at(principal.expires_at, token_id, socket)

    def _close_at(self, expires_at: int, token_id: int, socket: TokenSocket) -> None:
        delay = (expires_at - now_micros()) / MICROS_PER_SECOND
        self._expiry[socket] = asyncio.get_running_loop().call_later(
            max(delay, 0.0), self._expire, expires_at, token_id, socket
        )

    def discard(self, principal: Principal, socket: TokenSocket) -> None:
        sockets = self._by_token.get(principal.token_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self._by_token[principal.token_id]
        timer = self._expiry.pop(socket, None)
        if timer is not None:
            timer.cancel()

    def revoked(self, token_id: int) -> None:
        self._revoked[token_id] = None
        if len(self._revoked) > MAX_REVOKED_REMEMBERED:
            del self._revoked[next(iter(self._revoked))]
        for socket in self._by_token.pop(token_id, set()):
            timer = self._expiry.pop(socket, None)
            if timer is not None:
                timer.cancel()
            self._close(socket, "Forbidden: the token was revoked")

    def _expire(self, expires_at: int, token_id: int, socket: TokenSocket) -> None:
        if now_micros() < expires_at:
            # The loop's timers can fire a little early (uvloop counts in milliseconds): the
            # token is good until its instant, so its sockets close no sooner.
            self._close_at(expires_at, token_id, socket)
            return
        self._expiry.pop(socket, None)
        sockets = self._by_token.get(token_id)
        if sockets is not None and socket in sockets:
            sockets.discard(socket)
            if not sockets:
                del self._by_token[token_id]
            self._close(socket, "Forbidden: the token expired")

    def _close(self, socket: TokenSocket, reason: str) -> None:
        # A task each: one socket that is slow to close holds up no other.
        task = asyncio.create_task(socket.close_forbidden(reason), name="close-token-socket")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def count(self) -> int:
        return sum(len(sockets) for sockets in self._by_token.values())
