"""The tenant's activity per hour or day, from the trend_buckets counters (one row per hour
with activity): every bucket of the window, zeros included, oldest first."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.errors import BadUserInput
from app.domain.timeutil import MICROS_PER_HOUR
from app.store.models import TrendBucket

HOURS_PER_BUCKET = {"HOUR": 1, "DAY": 24}
MAX_BUCKETS = {"HOUR": 24 * 14, "DAY": 400}


@dataclass(frozen=True, slots=True)
class TrendPointView:
    at: int  # bucket start, microseconds
    changes: int = 0
    runs_started: int = 0
    runs_succeeded: int = 0
    runs_completed_with_warning: int = 0
    runs_failed: int = 0


@dataclass(frozen=True, slots=True)
class Window:
    """Buckets first .. first + count - 1, in hours of `hours` each (hour numbers since the
    epoch, UTC)."""

    first: int
    count: int
    hours: int

    @property
    def first_hour(self) -> int:
        return self.first * self.hours

    @property
    def last_hour(self) -> int:
        return (self.first + self.count) * self.hours - 1


def window(since: int, until: int, bucket: str) -> Window:
    """The buckets holding `since` through `until` (microseconds, inclusive)."""
    if bucket not in HOURS_PER_BUCKET:
        raise BadUserInput(f"Unknown bucket {bucket!r}.")
    if since > until:
        raise BadUserInput("since is after until.")
    size = HOURS_PER_BUCKET[bucket] * MICROS_PER_HOUR
    first, last = since // size, until // size
    count = last - first + 1
    if count > MAX_BUCKETS[bucket]:
        raise BadUserInput(
            f"At most {MAX_BUCKETS[bucket]} {bucket} buckets per query (asked for {count})."
        )
    return Window(first, count, HOURS_PER_BUCKET[bucket])


async def sync_trends(
    session: AsyncSession, tenant_id: int, since: int, until: int, bucket: str
) -> list[TrendPointView]:
    span = window(since, until, bucket)
    rows = await session.execute(
        select(
            TrendBucket.hour,
            TrendBucket.changes,
            TrendBucket.runs_started,
            TrendBucket.runs_succeeded,
            TrendBucket.runs_completed_with_warning,
            TrendBucket.runs_failed,
        ).where(
            TrendBucket.tenant_id == tenant_id,
            TrendBucket.hour >= span.first_hour,
            TrendBucket.hour <= span.last_hour,
        )
    )
    sums = [[0] * 5 for _ in range(span.count)]
    for hour, *values in rows:
        into = sums[hour // span.hours - span.first]
        for k, value in enumerate(values):
            into[k] += int(value)
    size = span.hours * MICROS_PER_HOUR
    return [TrendPointView((span.first + k) * size, *values) for k, values in enumerate(sums)]
