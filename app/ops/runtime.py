"""Process tuning for steady latency."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any


def freeze_startup_heap() -> None:
    """Move everything allocated at startup (schema, SQLAlchemy metadata, modules: hundreds of
    thousands of objects) out of the collector's reach. A full collection then walks only
    what requests allocate, instead of pausing a request for tens of milliseconds."""
    gc.collect()
    gc.freeze()


# A full collection walks every tracked object, and with thousands of open subscriptions
# that is most of the heap: ~0.1 s of pause at 1,000 dashboards, ~1 s at 10,000. With the
# default threshold (10 young collections) one ran about once a minute under load; it now
# runs about a tenth as often. Young collections are unchanged, so short-lived garbage
# (requests, events, most closed connections) goes as quickly as before; cyclic garbage
# that reached the oldest generation waits longer for its collection.
OLDEST_GENERATION_THRESHOLD = 100


LONG_PAUSE_MS = 50.0
THAW_AFTER_SECONDS = 600.0


class Collector:
    """Records the longest pause of each generation's collections (for /healthz), and keeps
    full collections short on a big heap.

    Thousands of open sockets are hundreds of thousands of long-lived objects, and every full
    collection walks them all: ~0.1 s of pause at 1,000 dashboards and ~1 s at 10,000, every
    15 s or so under load. After a full collection that paused longer than LONG_PAUSE_MS, its
    survivors are frozen (out of the collector's reach), so the next ones walk only what is new. The
    price: cyclic garbage among the frozen (a frozen connection that closes later) waits for
    the thaw, THAW_AFTER_SECONDS after the first freeze, which hands everything back to the
    collector for one long collection. A small heap never pauses that long: nothing changes.
    """

    def __init__(
        self,
        long_pause_ms: float = LONG_PAUSE_MS,
        thaw_after: float = THAW_AFTER_SECONDS,
        freeze: Callable[[], None] = gc.freeze,
        thaw: Callable[[], None] = gc.unfreeze,
    ) -> None:
        self.longest_ms = [0.0, 0.0, 0.0]
        self.freezes = 0
        self.thaws = 0
        self._long_pause_ms = long_pause_ms
        self._thaw_after = thaw_after
        self._freeze, self._thaw = freeze, thaw
        self._started = 0.0
        self._freeze_wanted = False
        self._frozen_at: float | None = None
        self._tick_handle: asyncio.TimerHandle | None = None

    def install(self, loop: asyncio.AbstractEventLoop, tick: float = 1.0) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        self._tick_every = tick
        self._tick_handle = loop.call_later(tick, self._tick, loop)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector, in whichever thread allocated: it only measures and
        # leaves a note; the event loop's next tick freezes.
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = (time.perf_counter() - self._started) * 1000
        generation = info["generation"]
        self.longest_ms[generation] = max(self.longest_ms[generation], pause)
        if generation == 2 and pause > self._long_pause_ms:
            self._freeze_wanted = True

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        if self._frozen_at is not None and now - self._frozen_at >= self._thaw_after:
            self._thaw()
            self.thaws += 1
            self._frozen_at = None
        elif self._freeze_wanted:
            self._freeze()
            self.freezes += 1
            if self._frozen_at is None:
                self._frozen_at = now
        self._freeze_wanted = False
        self._tick_handle = loop.call_later(self._tick_every, self._tick, loop)


def tune_collector(collector: Collector) -> None:
    """The oldest generation's threshold raised, and the app's Collector installed on the
    running loop (its lifespan uninstalls it at the end)."""
    young, middle, _oldest = gc.get_threshold()
    gc.set_threshold(young, middle, OLDEST_GENERATION_THRESHOLD)
    collector.install(asyncio.get_running_loop())
