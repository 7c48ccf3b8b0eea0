"""Pieces shared by the broker backends: the bounded event queue, backoff and errors."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 10_000

_T = TypeVar("_T")


class BroadcastUnavailable(ConnectionError):
    """The broker could not be reached in time, so the event was not published.

    Callers log it and carry on: clients recover a lost event by refetching.
    """


class DropOldestQueue(asyncio.Queue[_T], Generic[_T]):
    """FIFO that never grows past ``limit`` and never blocks the producer.

    When the consumer falls behind, the oldest item is dropped (newer state supersedes it) and
    counted in ``dropped``; the warning is rate-limited so that a flood cannot flood the log.
    ``put`` never waits, so one slow consumer cannot stall broadcaster's shared listener.
    """

    WARN_EVERY_SECONDS = 5.0

    def __init__(self, limit: int, name: str) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        super().__init__()  # unbounded underneath: the limit is enforced by dropping
        self.limit = limit
        self.name = name
        self.dropped = 0
        self._last_warning = -self.WARN_EVERY_SECONDS

    def put_nowait(self, item: _T) -> None:
        if self.qsize() >= self.limit:
            self.get_nowait()
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warning >= self.WARN_EVERY_SECONDS:
                self._last_warning = now
                log.warning(
                    "%s queue full (%d items): dropped the oldest, %d dropped so far",
                    self.name,
                    self.limit,
                    self.dropped,
                )
        super().put_nowait(item)

    async def put(self, item: _T) -> None:
        self.put_nowait(item)


class Backoff:
    """Capped exponential delay with jitter, so many workers do not reconnect in lockstep."""

    def __init__(self, initial: float = 0.1, cap: float = 2.0) -> None:
        self._initial = initial
        self._cap = cap
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self._cap, self._initial * 2**self.attempts)
        self.attempts += 1
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        self.attempts = 0


def redact_url(url: str) -> str:
    """The URL with its password masked, for log and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def await_first_connection(
    connected: asyncio.Event,
    within: float,
    last_error: Callable[[], BaseException | None],
    give_up: Callable[[], Awaitable[None]],
    what: str,
) -> None:
    """Wait for a backend's supervisor to connect once; else clean up and raise, naming the
    last error (a service that cannot reach its broker at startup should fail fast)."""
    try:
        async with asyncio.timeout(within):
            await connected.wait()
    except TimeoutError:
        error = last_error()
        await give_up()
        raise BroadcastUnavailable(f"{what} not reachable within {within:g}s: {error}") from error
