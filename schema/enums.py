"""The contract's enums. SyncStatus, RunState and Role mirror app.domain's UserStatus, RunState
and Role, RunKind and SyncService app.domain.validation's RUN_KINDS and SERVICES
(tests/unit/test_statuses.py and test_roles.py check they list the same values)."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="A user's sync state, derived from its runs.")
class SyncStatus(Enum):
    NEVER_SYNCED = "NEVER_SYNCED"
    IN_PROGRESS = "IN_PROGRESS"
    SYNCED = "SYNCED"
    COMPLETED_WITH_WARNING = "COMPLETED_WITH_WARNING"
    FAILED = "FAILED"


@strawberry.enum(description="The state of one sync run.")
class RunState(Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    COMPLETED_WITH_WARNING = "COMPLETED_WITH_WARNING"
    FAILED = "FAILED"


@strawberry.enum(description="INITIAL: first bulk sync of a user; DELTA: later syncs.")
class RunKind(Enum):
    INITIAL = "INITIAL"
    DELTA = "DELTA"


@strawberry.enum(description="What a run synchronises.")
class SyncService(Enum):
    MAIL = "MAIL"
    CALENDAR = "CALENDAR"
    CONTACTS = "CONTACTS"
    DRIVE = "DRIVE"


@strawberry.enum(description="What a token may do.")
class Role(Enum):
    VIEWER = "VIEWER"
    OPERATOR = "OPERATOR"
    WORKER = "WORKER"
    ADMIN = "ADMIN"


@strawberry.enum(description="Orders of the user list.")
class SyncUserOrder(Enum):
    EMAIL_ASC = "EMAIL_ASC"
    LATEST_SYNC_DESC = "LATEST_SYNC_DESC"
