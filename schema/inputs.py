"""Input types of the contract."""

from __future__ import annotations

import strawberry

from schema.enums import SyncService, SyncStatus
from schema.scalars import DateTime


@strawberry.input(description="Filters of the user list; all given filters apply together.")
class SyncUserFilter:
    email_contains: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of email or destinationEmail."
    )
    latest_sync_from: DateTime | None = strawberry.field(
        default=None,
        description="Inclusive; when either bound is set, never-synced users are excluded.",
    )
    latest_sync_to: DateTime | None = strawberry.field(default=None, description="Inclusive.")
    policy_id: strawberry.ID | None = None
    status: SyncStatus | None = None
    error_code: str | None = strawberry.field(
        default=None,
        description="Users whose status is FAILED with this errorCode on their most recent "
        "finished run.",
    )


@strawberry.input(description="One item a run could not sync.")
class FailedItemInput:
    item_id: str = strawberry.field(description="The worker's identifier for the item.")
    item_type: str = strawberry.field(description="e.g. message, attachment, folder, event.")
    error_code: str
    error_message: str


@strawberry.input(description="A user to sync.")
class SyncUserInput:
    email: str
    destination_email: str
    policy_id: strawberry.ID | None = None


@strawberry.input(description="A sync policy.")
class PolicyInput:
    name: str
    description: str | None = None
    active: bool = strawberry.field(
        default=False, description="Saved inactive unless asked, as in the product this serves."
    )
    sync_interval_minutes: int = strawberry.field(description="15 .. 10080 (a week).")
    services: list[SyncService] = strawberry.field(default_factory=lambda: [SyncService.MAIL])
