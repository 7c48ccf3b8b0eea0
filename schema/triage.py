"""Failure triage in the schema: failureReasons, syncTrends and requestSyncs, with their types.
Thin: the resolvers are in resolvers/triage.py."""

from __future__ import annotations

from enum import Enum

import strawberry

from app.domain.timeutil import from_micros
from app.reads.failure_reasons import FailureReasonView
from app.reads.trends import TrendPointView
from resolvers import queries
from resolvers import triage as resolvers
from schema.inputs import SyncUserFilter
from schema.scalars import BigInt, DateTime
from schema.types import Info


@strawberry.enum(description="The size of a syncTrends bucket (UTC hours or days).")
class TrendBucket(Enum):
    HOUR = "HOUR"
    DAY = "DAY"


@strawberry.type(
    description="The tenant's FAILED users with one errorCode on their most recent finished run."
)
class FailureReason:
    error_code: str
    sample_message: str = strawberry.field(
        description="The errorMessage of the most recent failure with this code."
    )
    user_count: int = strawberry.field(
        description="Users FAILED now with this code; exact; the userCounts add up to failedSyncs."
    )
    last_seen_at: DateTime = strawberry.field(description="When this code last failed a run.")

    @classmethod
    def of(cls, view: FailureReasonView) -> FailureReason:
        return cls(
            error_code=view.error_code,
            sample_message=view.sample_message,
            user_count=view.user_count,
            last_seen_at=from_micros(view.last_seen_at),
        )


@strawberry.type(description="One bucket of the tenant's activity.")
class TrendPoint:
    at: DateTime = strawberry.field(description="Bucket start, UTC.")
    changes: BigInt = strawberry.field(description="Changes reported in the bucket.")
    runs_started: int
    runs_succeeded: int = strawberry.field(
        description="Runs that finished in the bucket, by their final state."
    )
    runs_completed_with_warning: int
    runs_failed: int

    @classmethod
    def of(cls, view: TrendPointView) -> TrendPoint:
        return cls(
            at=from_micros(view.at),
            changes=view.changes,
            runs_started=view.runs_started,
            runs_succeeded=view.runs_succeeded,
            runs_completed_with_warning=view.runs_completed_with_warning,
            runs_failed=view.runs_failed,
        )


@strawberry.type(description="What a requestSyncs did.")
class BulkSyncRequest:
    requested: int = strawberry.field(description="Users made due at once.")
    skipped: int = strawberry.field(
        description="Matching users without an active policy, or with a run running."
    )


async def failure_reasons(info: Info, first: int | None = 10) -> list[FailureReason]:
    views = await resolvers.failure_reasons(info.context, 10 if first is None else first)
    return [FailureReason.of(v) for v in views]


async def sync_trends(
    info: Info,
    since: DateTime,
    until: DateTime | None = None,
    bucket: TrendBucket | None = TrendBucket.HOUR,  # null: the default
) -> list[TrendPoint]:
    views = await resolvers.sync_trends(
        info.context,
        since,
        until,
        (bucket or TrendBucket.HOUR).value,
    )
    return [TrendPoint.of(v) for v in views]


async def request_syncs(info: Info, filter: SyncUserFilter) -> BulkSyncRequest:
    parsed = queries.user_filter(
        filter.email_contains,
        filter.latest_sync_from,
        filter.latest_sync_to,
        filter.policy_id,
        filter.status.value if filter.status else None,
        filter.error_code,
    )
    result = await resolvers.request_syncs(info.context, parsed)
    return BulkSyncRequest(requested=result.requested, skipped=result.skipped)


FAILURE_REASONS = strawberry.field(
    resolver=failure_reasons,
    description="The tenant's FAILED users grouped by the errorCode of their most recent "
    "finished run: most users first, then errorCode; first: 1..100.",
)
SYNC_TRENDS = strawberry.field(
    resolver=sync_trends,
    description="Every bucket in [since, until (default now)], zeros included, oldest first; "
    "over 24*14 HOUR or 400 DAY buckets: BAD_USER_INPUT.",
)
REQUEST_SYNCS = strawberry.mutation(
    resolver=request_syncs,
    description='OPERATOR: "retry all": every matching user with an active policy and no run '
    "running is due at once.",
)
