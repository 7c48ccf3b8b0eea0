"""A budget of cost points per token and minute (a fixed window): each operation spends its
estimated cost (at least 1). Callers without a valid token spend from one budget per client
address (schema/rate_limit.py). With a redis:// broker the windows live in Redis, so every API
process spends from the same budget; otherwise each process keeps its own."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as redis

log = logging.getLogger("syncstatus.rate_limit")
WINDOW_SECONDS = 60
# A spend waits at most this long for Redis (on a LAN it answers in well under a millisecond);
# after a failure this process counts alone for REDIS_RETRY_SECONDS before it asks again, so a
# Redis that hangs costs one request a timeout every few seconds, not every request 5 s.
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_SECONDS = 5.0
# INCRBY, with the key's expiry set when the window's first spend creates it.
SPEND = """
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return used
"""


def over_budget(retry_after: int) -> str:
    """What a caller over its budget is told (GraphQL's RATE_LIMITED, the CSV export's)."""
    return f"This token spent its budget of query cost for this minute; retry in {retry_after} s."


class RateLimiter:
    def __init__(self, limit: int, redis_url: str | None = None) -> None:
        self.limit = limit
        # token id, or "anonymous:<address>" -> (window, spent)
        self._windows: dict[int | str, tuple[int, int]] = {}
        self._redis: Any = None
        self._script: Any = None
        self._redis_down_until = 0.0  # monotonic; counting alone until then
        if limit and redis_url:
            self._redis = redis.Redis.from_url(
                redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._script = self._redis.register_script(SPEND)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def spend(self, key: int | str, cost: int) -> int | None:
        """Spends `cost` points of the budget of `key` (a token's id, or an anonymous
        caller's address): None if within it, else the seconds until the next window."""
        if not self.limit:
            return None
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
        cost = max(1, cost)
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            try:
                name = f"syncstatus:rate:{key}:{window}"
                spent = int(await self._script(keys=[name], args=[cost, 2 * WINDOW_SECONDS]))
            except Exception as error:  # Redis down: serve rather than refuse everyone
                if not self._redis_down_until:
                    log.warning(
                        "rate limit counted by this process alone (Redis: %r); asking Redis "
                        "again every %.0f s",
                        error,
                        REDIS_RETRY_SECONDS,
                    )
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
            else:
                if self._redis_down_until:
                    log.info("rate limit counted in Redis again")
                    self._redis_down_until = 0.0
                return retry_after if spent > self.limit else None
        started, spent = self._windows.get(key, (window, 0))
        if started != window:
            spent = 0
            if len(self._windows) > 100_000:  # tokens idle since an older window
                self._windows = {t: w for t, w in self._windows.items() if w[0] == window}
        spent += cost
        self._windows[key] = (window, spent)
        return retry_after if spent > self.limit else None
