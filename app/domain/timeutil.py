"""UTC time helpers. Times are stored as integer microseconds since the epoch: portable
arithmetic in SQL (due times are `start + interval`) and compact, fast indexes on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_HOUR = 60 * MICROS_PER_MINUTE


class OutOfRange(ValueError):
    """A date and time with no UTC value (0001-01-01T00:00+01:00 is in year 0 in UTC)."""


def parse_iso(value: str) -> datetime:
    """An ISO 8601 date and time (`Z` for UTC; without an offset: UTC) that has a UTC value:
    no answer could ever serve back one that has not. ValueError (OutOfRange) otherwise."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        raise OutOfRange(value) from None
    return parsed


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * MICROS_PER_SECOND + delta.microseconds


def from_micros(value: int) -> datetime:
    seconds, micros = divmod(value, MICROS_PER_SECOND)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


def now_micros() -> int:
    return to_micros(utcnow())


def minute_of(micros: int) -> int:
    return micros // MICROS_PER_MINUTE
