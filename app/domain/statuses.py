"""A user's sync status and a run's state, and the one rule between them: a finished run's
state decides its user's status (and a run's kind: a user's first run is INITIAL). Written here
once; the lifecycle applies the rule, the seed inverts it (STATE_BEHIND), schema/enums.py
mirrors the vocabularies for GraphQL (tests/unit/test_statuses.py checks they match).

StrEnums: members are the stored strings, so they go into SQL, JSON and str-typed views as they
are, and compare equal to the plain strings read back from the database.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class UserStatus(StrEnum):
    NEVER_SYNCED = "NEVER_SYNCED"
    IN_PROGRESS = "IN_PROGRESS"  # a run is running
    SYNCED = "SYNCED"
    COMPLETED_WITH_WARNING = "COMPLETED_WITH_WARNING"
    FAILED = "FAILED"


class RunState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    COMPLETED_WITH_WARNING = "COMPLETED_WITH_WARNING"
    FAILED = "FAILED"


# The user's status while a run is running, and once it finished in each state.
STATUS_AFTER: Final = MappingProxyType(
    {
        RunState.RUNNING: UserStatus.IN_PROGRESS,
        RunState.SUCCEEDED: UserStatus.SYNCED,
        RunState.COMPLETED_WITH_WARNING: UserStatus.COMPLETED_WITH_WARNING,
        RunState.FAILED: UserStatus.FAILED,
    }
)
# The inverse: the state of the latest run behind a status (NEVER_SYNCED has no run).
STATE_BEHIND: Final = MappingProxyType({status: state for state, status in STATUS_AFTER.items()})
FINISHED: Final = tuple(state for state in RunState if state is not RunState.RUNNING)
# Finishes that end a failure streak (USER_RECOVERED): the run got through, warnings or not.
COMPLETED: Final = (RunState.SUCCEEDED, RunState.COMPLETED_WITH_WARNING)


def run_kind(latest_sync_at: int | None) -> str:
    """A user's first run copies the whole mailbox (INITIAL); later ones the changes (DELTA)."""
    return "INITIAL" if latest_sync_at is None else "DELTA"


def finished_state(error: bool, items_failed: int) -> RunState:
    """The state finishSyncRun gives a run: an error fails it, failed items only warn."""
    if error:
        return RunState.FAILED
    return RunState.COMPLETED_WITH_WARNING if items_failed else RunState.SUCCEEDED
