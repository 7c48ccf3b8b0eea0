"""Shared by the demo tests: waiting for a live process to show something."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(what: str, probe: Callable[[], Awaitable[T | None]], seconds: float) -> T:
    """Polls `probe` until it returns something; fails saying `what` did not happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (result := await probe()) is not None:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")
