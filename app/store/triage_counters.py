"""The failure-triage counters, kept in the same transaction as each state change (like
app.store.counters): FAILED users per errorCode (failure_reasons) and activity per hour
(trend_buckets). Upserts, so concurrent writers on PostgreSQL never lose counts.

Builders return (statement, rows) writes; app.store.counters.Moves runs them after its own, in one
order (status, latest, failures by code, trends by hour), so writers never deadlock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Executable, Table, and_, bindparam, case, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from app.domain.statuses import FINISHED
from app.domain.timeutil import MICROS_PER_HOUR
from app.store.models import FailureReason, TrendBucket

Write = tuple[Executable, dict[str, Any] | list[dict[str, Any]]]
reasons = cast(Table, FailureReason.__table__)
trends = cast(Table, TrendBucket.__table__)
# TrendBucket's counters, by the RunState a finish ends in (runs_succeeded, ...).
RUNS_STARTED = "runs_started"
FINISHED_COLUMN: dict[str, str] = {state: f"runs_{state.lower()}" for state in FINISHED}
TREND_COLUMNS = ("changes", RUNS_STARTED, *FINISHED_COLUMN.values())


def _reasons_upsert(insert: Any) -> Insert:
    stmt = insert(reasons)
    newer = stmt.excluded.last_seen_at >= reasons.c.last_seen_at
    return stmt.on_conflict_do_update(
        index_elements=["tenant_id", "error_code"],
        set_={
            "user_count": reasons.c.user_count + stmt.excluded.user_count,
            # The most recent failure's message and time (on PostgreSQL transactions may
            # commit out of the order of their clocks).
            "sample_message": case(
                (newer, stmt.excluded.sample_message), else_=reasons.c.sample_message
            ),
            "last_seen_at": case((newer, stmt.excluded.last_seen_at), else_=reasons.c.last_seen_at),
        },
    )


def _trends_upsert(insert: Any) -> Insert:
    stmt = insert(trends)
    return stmt.on_conflict_do_update(
        index_elements=["tenant_id", "hour"],
        set_={c: trends.c[c] + stmt.excluded[c] for c in TREND_COLUMNS},
    )


_REASONS = {
    "sqlite": _reasons_upsert(sqlite.insert),
    "postgresql": _reasons_upsert(postgresql.insert),
}
_TRENDS = {"sqlite": _trends_upsert(sqlite.insert), "postgresql": _trends_upsert(postgresql.insert)}
# Codes no FAILED user has any more: their rows go, so the table holds only current causes.
_EMPTIED = delete(reasons).where(
    and_(
        reasons.c.tenant_id == bindparam("tenant"),
        reasons.c.error_code.in_(bindparam("codes", expanding=True)),
        reasons.c.user_count <= 0,
    )
)


def hour_of(micros: int) -> int:
    return micros // MICROS_PER_HOUR


@dataclass(slots=True)
class TriageMoves:
    """Deltas of a change: FAILED users per code, the latest failure per code, activity per
    (hour, column)."""

    users: Counter[str] = field(default_factory=Counter)
    latest: dict[str, tuple[int, str]] = field(default_factory=dict)  # code: (at, message)
    activity: Counter[tuple[int, str]] = field(default_factory=Counter)

    def failed(self, code: str, message: str | None, at: int, users: int = 1) -> None:
        """`users` more users FAILED with this code, the latest of them at `at`."""
        self.users[code] += users
        seen = self.latest.get(code)
        if seen is None or at >= seen[0]:
            self.latest[code] = (at, message or "")

    def cleared(self, code: str | None) -> None:
        """A FAILED user with this code is FAILED no more (a run started)."""
        if code is not None:
            self.users[code] -= 1

    def count(self, at: int, column: str, amount: int = 1) -> None:
        if amount:
            self.activity[(hour_of(at), column)] += amount

    def writes(self, dialect: str, tenant_id: int) -> list[Write]:
        found: list[Write] = []
        codes = sorted(set(self.users) | set(self.latest))
        rows = []
        for code in codes:
            at, message = self.latest.get(code, (0, ""))
            if self.users[code] or at:
                rows.append(
                    {
                        "tenant_id": tenant_id,
                        "error_code": code,
                        "user_count": self.users[code],
                        "sample_message": message,
                        "last_seen_at": at,
                    }
                )
        if rows:
            found.append((_REASONS[dialect], rows))
        emptied = [code for code in codes if self.users[code] < 0]
        if emptied:
            found.append((_EMPTIED, {"tenant": tenant_id, "codes": emptied}))
        by_hour: dict[int, dict[str, Any]] = {}
        for (hour, column), amount in sorted(self.activity.items()):
            row = by_hour.setdefault(
                hour, {"tenant_id": tenant_id, "hour": hour, **dict.fromkeys(TREND_COLUMNS, 0)}
            )
            row[column] += amount
        if by_hour:
            found.append((_TRENDS[dialect], [by_hour[h] for h in sorted(by_hour)]))
        return found
