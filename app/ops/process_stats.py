"""Figures about this process for /healthz: leak checks and benchmarks read them."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

from app.ops.runtime import Collector

STATUS = Path("/proc/self/status")


def rss_kb() -> int | None:
    """Resident memory in KiB (Linux /proc), None where unavailable."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_stats(collector: Collector) -> dict[str, object]:
    return {
        "pid": os.getpid(),  # which worker answered, under `serve --workers N`
        "tasks": len(asyncio.all_tasks()),
        "rss_kb": rss_kb(),
        # Collections run per generation (the oldest ones pause the process longest).
        "gc_collections": [generation["collections"] for generation in gc.get_stats()],
        "gc_longest_pause_ms": [round(ms, 2) for ms in collector.longest_ms],
        "gc_freezes": collector.freezes,
        "gc_thaws": collector.thaws,
    }
