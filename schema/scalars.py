"""DateTime: ISO 8601 with offset; the service returns UTC. Inputs without an offset are UTC.
BigInt: an integer that may pass 2^31 (GraphQL's Int is 32-bit), as a JSON number."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, NewType

import strawberry

from app.domain.errors import BadUserInput
from app.domain.timeutil import OutOfRange, parse_iso


def _parse(value: object) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise BadUserInput("DateTime must be an ISO 8601 string.")
    try:
        return parse_iso(value)
    except OutOfRange:
        raise BadUserInput(f"DateTime out of range in UTC: {value!r}.") from None
    except ValueError:
        raise BadUserInput(f"Malformed DateTime: {value!r}.") from None


def _serialize(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# JSON numbers are exact up to 2^53 in every client (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_SAFE_INTEGER = 2**53 - 1


def _parse_big(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_SAFE_INTEGER:
        raise BadUserInput("BigInt must be an integer within +-(2^53 - 1).")
    return value


def _serialize_big(value: int) -> int:
    return int(value)


if TYPE_CHECKING:  # what a field of either holds; a type checker cannot read scalar()'s result
    DateTime = datetime
    BigInt = int
else:
    DateTime = strawberry.scalar(
        NewType("DateTime", datetime),
        name="DateTime",
        description="ISO 8601 date and time with offset; the service returns UTC.",
        serialize=_serialize,
        parse_value=_parse,
    )

    BigInt = strawberry.scalar(
        NewType("BigInt", int),
        name="BigInt",
        description="An integer that may pass 2^31, as a JSON number (exact up to 2^53).",
        serialize=_serialize_big,
        parse_value=_parse_big,
    )
