"""UTC time helpers. Times are stored as integer microseconds since the epoch: portable
arithmetic in SQL (due times are `start + interval`) and compact, fast indexes on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

MICROS_PER_SECOND = 1_000_000
MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND
MICROS_PER_HOUR = 60 * MICROS_PER_MINUTE


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
