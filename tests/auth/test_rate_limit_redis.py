"""The token budgets kept in Redis (app/auth/rate_limit.py) when Redis goes silent (packets
dropped, nothing refused): a spend waits a fraction of a second once, then the process counts
alone for a few seconds, still enforcing the limit, and goes back to Redis when it answers."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import pytest

from app.auth import rate_limit
from app.auth.rate_limit import REDIS_TIMEOUT_SECONDS, WINDOW_SECONDS, RateLimiter
from tests.freezable_proxy import FreezableProxy
from tests.services import redis_url

FRESH_WINDOW_SECONDS = 5.0


async def test_a_silent_redis_costs_one_short_wait_not_one_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = urlsplit(redis_url())
    proxy = FreezableProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    monkeypatch.setattr(rate_limit, "REDIS_RETRY_SECONDS", 1.0)
    limiter = RateLimiter(10, f"redis://127.0.0.1:{proxy.port}/0")
    key = f"silent-{time.time_ns()}"
    # Budgets are per minute: a new minute mid-test would start the local count afresh (and
    # let spend 11 through). The test takes ~2 s; begin it with at least this much left.
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < FRESH_WINDOW_SECONDS:
        await asyncio.sleep(left + 0.05)
    try:
        assert await limiter.spend(key, 1) is None  # counted in Redis
        proxy.freeze()
        started = time.monotonic()
        # Before: redis-py waited without a timeout, so the first spend never returned.
        results = [await asyncio.wait_for(limiter.spend(key, 1), 10) for _ in range(20)]
        took = time.monotonic() - started
        assert took < 2 * REDIS_TIMEOUT_SECONDS + 0.5, took  # one wait, then local counts
        # Counted alone meanwhile, and still limited (this process had not spent before).
        assert results[:10] == [None] * 10
        assert all(r is not None and r >= 1 for r in results[10:])
        proxy.thaw()
        await asyncio.sleep(1.1)  # the retry interval passes: Redis is asked again
        assert await limiter.spend(key, 1) is None  # Redis's count, 2 of 10 (alone: 21)
    finally:
        await limiter.close()
        await proxy.close()
