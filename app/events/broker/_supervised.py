"""The reconnecting part of our broker backends, written once: a supervisor task that opens a
session, runs it until the connection is lost, cleans up and retries with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

from broadcaster import BroadcastBackend, Event

from app.ops.error_line import describe
from app.ops.tasks import cancel_and_wait

from ._common import DEFAULT_MAX_QUEUE, Backoff, DropOldestQueue, await_first_connection

log = logging.getLogger(__name__)


class SupervisedBackend(BroadcastBackend):
    """A broadcaster backend whose receiving connection reconnects and resubscribes by itself.

    Subclasses open their session in ``_session`` (calling ``_mark_connected`` once subscribed
    again to ``_channels``, under ``_lock``) and return or raise when it is lost; ``_end_session``
    releases what it left. ``dropped`` counts events discarded because the receive queue was
    full; ``reconnects`` counts successful reconnections after a lost connection.
    ``on_disconnect`` is called when a connection that was up is lost: events published from
    then until the reconnection are never delivered here, so subscribers must be told.
    """

    # What a lost or unreachable broker looks like; other errors are logged with a traceback.
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, TimeoutError)

    def __init__(self, what: str, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        # BroadcastBackend.__init__ only raises NotImplementedError, so it is not called.
        self._what = what  # for log lines, with any password masked
        self._queue: DropOldestQueue[Event] = DropOldestQueue(max_queue, f"{what} queue")
        self._channels: set[str] = set()
        # Serialises commands on the receiving connection and swapping it on reconnect.
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._last_error: BaseException | None = None
        self._ever_connected = False
        self._backoff = Backoff()
        self.reconnects = 0
        self.on_reconnect: Callable[[], None] | None = None  # e.g. a metric
        self.on_disconnect: Callable[[], None] | None = None  # e.g. the hub's broker_lost

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    @property
    def is_connected(self) -> bool:
        """Whether the receiving connection is currently up."""
        return self._connected.is_set()

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def _start_supervisor(self, within: float) -> None:
        """Start the supervisor and wait for its first session; else clean up and raise."""
        if self._supervisor is not None:
            raise RuntimeError(f"{type(self).__name__} is already connected")
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self._what} supervisor")
        await await_first_connection(
            self._connected, within, lambda: self._last_error, self.disconnect, self._what
        )

    async def _stop_supervisor(self) -> None:
        await cancel_and_wait(self._supervisor)
        self._supervisor = None
        self._connected.clear()

    def _mark_connected(self) -> None:
        """Called by ``_session`` once the connection is up and listens to every channel."""
        self._connected.set()
        self._backoff.reset()
        if self._ever_connected:
            self.reconnects += 1
            if self.on_reconnect is not None:
                self.on_reconnect()
            # A warning, as the loss was: an operator logging warnings only must see the
            # outage end too (app.ops.outage.OutageLog pairs its lines the same way).
            log.warning(
                "reconnected %s, resubscribed %d channel(s)", self._what, len(self._channels)
            )
        self._ever_connected = True

    def _notify_disconnect(self) -> None:
        if self.on_disconnect is None:
            return
        try:
            self.on_disconnect()
        except Exception:
            # The supervisor must go on reconnecting whatever the hook does.
            log.exception("the disconnect hook of %s failed", self._what)

    async def _session(self) -> None:
        raise NotImplementedError

    async def _end_session(self) -> None:
        raise NotImplementedError

    async def _supervise(self) -> None:
        while True:
            try:
                await self._session()
                log.warning("%s lost", self._what)
            except self.connection_errors as exc:
                self._last_error = exc
                # Warn on the first failure and then about every 30 s, not on every retry.
                if self._backoff.attempts % 15 == 0:
                    log.warning("%s failed, retrying: %s", self._what, describe(exc))
            except Exception as exc:
                # E.g. a permission error on subscribe: a supervisor that died silently would
                # stop all delivery, so log it and start over with backoff instead.
                self._last_error = exc
                log.exception("%s failed, reconnecting", self._what)
            if self._connected.is_set():
                self._connected.clear()
                self._notify_disconnect()
            await self._end_session()
            await asyncio.sleep(self._backoff.next_delay())
