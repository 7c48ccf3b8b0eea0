"""The tenant's FAILED users grouped by cause, from the failure_reasons counters (one row per
code the tenant's FAILED users have now): no scan of users or runs."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.errors import BadUserInput
from app.store.models import FailureReason

MAX_REASONS = 100


@dataclass(frozen=True, slots=True)
class FailureReasonView:
    error_code: str
    sample_message: str
    user_count: int
    last_seen_at: int


async def failure_reasons(
    session: AsyncSession, tenant_id: int, first: int
) -> list[FailureReasonView]:
    """Most users first, then by code."""
    if not 1 <= first <= MAX_REASONS:
        raise BadUserInput(f"first must be between 1 and {MAX_REASONS} (got {first}).")
    rows = await session.execute(
        select(
            FailureReason.error_code,
            FailureReason.sample_message,
            FailureReason.user_count,
            FailureReason.last_seen_at,
        )
        .where(FailureReason.tenant_id == tenant_id, FailureReason.user_count > 0)
        .order_by(FailureReason.user_count.desc(), FailureReason.error_code)
        .limit(first)
    )
    return [FailureReasonView(*row) for row in rows]
