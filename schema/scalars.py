"""DateTime: ISO 8601 with offset; the service returns UTC. Inputs without an offset are UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NewType

import strawberry

from app.errors import BadUserInput


def _parse(value: object) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise BadUserInput("DateTime must be an ISO 8601 string.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadUserInput(f"Malformed DateTime: {value!r}.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _serialize(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


DateTime = strawberry.scalar(
    NewType("DateTime", datetime),
    name="DateTime",
    description="ISO 8601 date and time with offset; the service returns UTC.",
    serialize=_serialize,
    parse_value=_parse,
)
