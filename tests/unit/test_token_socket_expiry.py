"""A token's WebSockets close when it expires, never before (app/auth/sockets.py): an event
loop's timer may fire a little early (uvloop counts milliseconds; CI once saw a socket closed
83 us before the token's instant), and then the close waits for the instant."""

from __future__ import annotations

import asyncio

import pytest

from app.auth import sockets
from app.auth.sockets import TokenSockets
from app.auth.tokens import Principal

START = 1_000_000_000_000


class Socket:
    def __init__(self) -> None:
        self.closed: list[str] = []

    async def close_forbidden(self, reason: str) -> None:
        self.closed.append(reason)


async def test_a_timer_that_fires_before_the_expiry_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [START]  # the wall clock, held back while the loop's timer runs out
    monkeypatch.setattr(sockets, "now_micros", lambda: clock[0])
    expires = START + 30_000  # 30 ms
    registry, socket = TokenSockets(), Socket()
    registry.add(Principal(1, "VIEWER", token_id=7, expires_at=expires), socket)

    await asyncio.sleep(0.08)  # the timer fired; by the wall clock the token is still good
    assert socket.closed == [] and registry.count() == 1

    clock[0] = expires
    for _ in range(100):
        if socket.closed:
            break
        await asyncio.sleep(0.005)
    assert socket.closed == ["Forbidden: the token expired"]
    assert registry.count() == 0
