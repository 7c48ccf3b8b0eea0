"""app.domain.statuses: the run state -> user status rule and its inverse, and schema/enums.py's
GraphQL enums listing exactly the domain's values."""

from __future__ import annotations

from enum import Enum

import pytest

from app.domain import statuses, validation
from app.domain.statuses import STATE_BEHIND, STATUS_AFTER, RunState, UserStatus
from schema import enums


@pytest.mark.parametrize(
    ("graphql", "domain"), [(enums.SyncStatus, UserStatus), (enums.RunState, RunState)]
)
def test_graphql_enums_mirror_the_domain(graphql: type[Enum], domain: type[Enum]) -> None:
    assert [(m.name, m.value) for m in graphql] == [(m.name, m.value) for m in domain]
    # Names equal values: the stored string is the GraphQL value (SyncStatus(view.status)).
    assert all(m.name == m.value for m in domain)


@pytest.mark.parametrize(
    ("graphql", "domain"),
    [(enums.RunKind, validation.RUN_KINDS), (enums.SyncService, validation.SERVICES)],
)
def test_graphql_enums_list_the_valid_values(graphql: type[Enum], domain: tuple[str]) -> None:
    assert [m.value for m in graphql] == list(domain)


def test_run_kind() -> None:
    assert statuses.run_kind(None) == "INITIAL"
    assert statuses.run_kind(0) == statuses.run_kind(1_790_000_000_000_000) == "DELTA"
    assert statuses.run_kind(None) in validation.RUN_KINDS


def test_members_are_the_stored_strings() -> None:
    assert UserStatus.SYNCED == "SYNCED"
    assert f"{RunState.FAILED}" == "FAILED"
    assert {"IN_PROGRESS": 1}[UserStatus.IN_PROGRESS] == 1  # keys read back from the database
    # A stored string as the key, on purpose: it finds the member.
    assert STATUS_AFTER["SUCCEEDED"] is UserStatus.SYNCED  # type: ignore[index]


def test_run_state_to_status() -> None:
    assert dict(STATUS_AFTER) == {
        "RUNNING": "IN_PROGRESS",
        "SUCCEEDED": "SYNCED",
        "COMPLETED_WITH_WARNING": "COMPLETED_WITH_WARNING",
        "FAILED": "FAILED",
    }


def test_inverse_round_trips() -> None:
    assert set(STATUS_AFTER) == set(RunState)
    for state, status in STATUS_AFTER.items():
        assert STATE_BEHIND[status] is state
    for status, state in STATE_BEHIND.items():
        assert STATUS_AFTER[state] is status
    # Every status but NEVER_SYNCED comes from a run.
    assert set(UserStatus) - set(STATE_BEHIND) == {UserStatus.NEVER_SYNCED}


def test_finished_states() -> None:
    assert set(statuses.FINISHED) == set(RunState) - {RunState.RUNNING}
    assert set(statuses.COMPLETED) == {RunState.SUCCEEDED, RunState.COMPLETED_WITH_WARNING}
    assert statuses.finished_state(True, 0) is RunState.FAILED
    assert statuses.finished_state(True, 3) is RunState.FAILED
    assert statuses.finished_state(False, 3) is RunState.COMPLETED_WITH_WARNING
    assert statuses.finished_state(False, 0) is RunState.SUCCEEDED
