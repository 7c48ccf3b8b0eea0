"""The collector's pauses are on record, and a long full collection freezes its survivors
until the thaw (app/ops/runtime.py). Freeze and thaw are counted here instead of moving this
test process's heap; the pauses are timed by the Collector from its callbacks."""

from __future__ import annotations

import asyncio
import time

from app.ops.runtime import Collector
from tests.subscriptions.support import eventually


class Calls:
    def __init__(self) -> None:
        self.freezes = 0
        self.thaws = 0

    def freeze(self) -> None:
        self.freezes += 1

    def thaw(self) -> None:
        self.thaws += 1


def _collection(collector: Collector, generation: int, seconds: float) -> None:
    collector("start", {"generation": generation})
    time.sleep(seconds)
    collector("stop", {"generation": generation})


async def test_a_long_full_collection_freezes_until_the_thaw() -> None:
    calls = Calls()
    collector = Collector(long_pause_ms=5, thaw_after=1.0, freeze=calls.freeze, thaw=calls.thaw)
    collector.install(asyncio.get_running_loop(), tick=0.02)
    try:
        _collection(collector, 0, 0.02)  # long, but young: nothing to freeze
        _collection(collector, 2, 0.0)  # full, but short: nothing to freeze
        await asyncio.sleep(0.2)  # ten ticks
        assert (calls.freezes, calls.thaws) == (0, 0)
        assert collector.longest_ms[0] >= 20 and collector.longest_ms[2] < 5

        started = time.monotonic()
        _collection(collector, 2, 0.01)
        await eventually(lambda: calls.freezes == 1)
        _collection(collector, 2, 0.01)  # frozen again; the thaw keeps its first schedule
        await eventually(lambda: calls.freezes == 2)
        await eventually(lambda: calls.thaws == 1)
        assert time.monotonic() - started >= 1.0
        assert (collector.freezes, collector.thaws) == (2, 1)
        assert collector.longest_ms[2] >= 10
    finally:
        collector.uninstall()
