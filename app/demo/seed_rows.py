"""The seed's rows, made as plain tuples in table column order (USER_COLUMNS, RUN_COLUMNS,
ITEM_COLUMNS), ready for executemany or COPY; and the counter deltas they add (Tally).

Speed matters here: at a million users this loop is a third of the seed. So one bound
`random()` per choice (rng.choices and randint cost ~1 us each), the (first, last) name pairs
and per-policy values made once, and counters kept in plain dicts keyed by ints."""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from app.domain.statuses import STATE_BEHIND, RunState, UserStatus
from app.domain.timeutil import MICROS_PER_HOUR, MICROS_PER_MINUTE
from app.store.counters import Moves, policy_key
from app.store.triage_counters import FINISHED_COLUMN, RUNS_STARTED

USER_COLUMNS = (
    "id",
    "tenant_id",
    "email",
    "destination_email",
    "policy_id",
    "status",
    "latest_sync_at",
    "latest_sort",
    "due_at",
    "sync_requested",
    "current_run_id",
    "last_finished_run_id",
    "unresolved_failure_count",
    "version",
    "created_at",
    "error_code",
)
RUN_COLUMNS = (
    "id",
    "tenant_id",
    "user_id",
    "kind",
    "service",
    "state",
    "started_at",
    "finished_at",
    "items_total",
    "items_processed",
    "items_failed",
    "changes",
    "error_code",
    "error_message",
    "last_report_at",
)
ITEM_COLUMNS = (
    "tenant_id",
    "run_id",
    "item_id",
    "item_type",
    "error_code",
    "error_message",
    "failed_at",
)
DAY = 24 * 60 * MICROS_PER_MINUTE
HISTORY = (1, 2, 2, 3)  # runs per synced user
# Plain strs: asyncpg's COPY wants exactly str, not a StrEnum.
RUNNING, SUCCEEDED, WARNED, FAILED = (
    str(s)
    for s in (
        RunState.RUNNING,
        RunState.SUCCEEDED,
        RunState.COMPLETED_WITH_WARNING,
        RunState.FAILED,
    )
)
NEVER, SYNCED, FAILED_STATUS = (
    str(UserStatus.NEVER_SYNCED),
    str(UserStatus.SYNCED),
    str(UserStatus.FAILED),
)
# Cumulative chances of each status (62% synced, 12% warned, 8% failed, 5% running, 13% never).
STATUS_CHANCES = (
    (0.62, SYNCED),
    (0.74, str(UserStatus.COMPLETED_WITH_WARNING)),
    (0.82, FAILED_STATUS),
    (0.87, str(UserStatus.IN_PROGRESS)),
    (1.0, NEVER),
)
STATE_OF = {str(status): str(state) for status, state in STATE_BEHIND.items()}
FINISHED_OF = {str(state): column for state, column in FINISHED_COLUMN.items()}


@dataclass(frozen=True, slots=True)
class SeedPolicy:
    id: int
    active: bool
    interval_minutes: int
    services: str


@dataclass(slots=True)
class Tally:
    """What the rows add to the counters: users per (policy, status, latest hour), changes per
    minute, runs per hour and column, failures per code (Moves.triage), policy user counts."""

    moves: Moves = field(default_factory=Moves)
    changes: dict[int, int] = field(default_factory=dict)  # minute: changes
    started: dict[int, int] = field(default_factory=dict)  # hour: runs started
    finished: dict[tuple[int, str], int] = field(default_factory=dict)  # (hour, column): runs
    policy_users: dict[int, int] = field(default_factory=dict)

    def settle(self) -> Moves:
        """The moves with the hour counts folded in (kept apart while counting: cheaper)."""
        activity = self.moves.triage.activity
        for hour, count in self.started.items():
            activity[(hour, RUNS_STARTED)] += count
        for key, count in self.finished.items():
            activity[key] += count
        for minute, changes in self.changes.items():
            activity[(minute // 60, "changes")] += changes
        self.started, self.finished = {}, {}
        return self.moves


@dataclass(slots=True)
class Rows:
    users: list[tuple[Any, ...]]
    runs: list[tuple[Any, ...]]
    items: list[tuple[Any, ...]]


class RowMaker:
    """Makes users (and their run history and failed items) in id order, deterministically
    for an rng seed."""

    def __init__(
        self,
        rng_seed: int,
        tenant_id: int,
        policies: list[SeedPolicy],
        weights: list[int],
        names: list[str],
        run_errors: tuple[tuple[str, str], ...],
        item_errors: tuple[tuple[str, str, str], ...],
        domain: str,
        now: int,
    ) -> None:
        self.rng = random.Random(rng_seed)
        self.tenant_id = tenant_id
        self.policies = policies
        self.cum_weights = list(accumulate(weights))
        self.names = names
        self.run_errors = run_errors
        self.item_errors = item_errors
        self.domain = domain
        self.now = now
        self.tally = Tally()

    def make(self, first_user: int, first_run: int, ordinal: int, size: int) -> Rows:
        """`size` users with ids from first_user and runs from first_run; `ordinal` numbers
        their emails (unique in the tenant)."""
        rng = self.rng.random
        tenant, now, domain, names = self.tenant_id, self.now, self.domain, self.names
        policies, cum, total_weight = self.policies, self.cum_weights, self.cum_weights[-1]
        run_errors, item_errors = self.run_errors, self.item_errors
        tally = self.tally
        status_moves, latest_moves = tally.moves.status, tally.moves.latest
        triage = tally.moves.triage
        changes_by_minute, started_by_hour = tally.changes, tally.started
        finished_by = tally.finished
        policy_users = tally.policy_users
        users: list[tuple[Any, ...]] = []
        runs: list[tuple[Any, ...]] = []
        items: list[tuple[Any, ...]] = []
        run_id = first_run
        day_ago = now - DAY
        for offset in range(size):
            uid = first_user + offset
            local = f"{names[int(rng() * len(names))]}{ordinal + offset}"
            policy = policies[bisect(cum, rng() * total_weight)]
            r = rng()
            status = next(s for chance, s in STATUS_CHANCES if r < chance)
            key = policy_key(policy.id)
            status_moves[(key, status)] += 1
            policy_users[policy.id] = policy_users.get(policy.id, 0) + 1
            email = f"{local}@{domain}.onmicrosoft.com"
            destination = f"{local}@{domain}.com"
            if status == NEVER:
                users.append(
                    (
                        uid,
                        tenant,
                        email,
                        destination,
                        policy.id,
                        status,
                        None,
                        0,
                        now,
                        False,
                        None,
                        None,
                        0,
                        1,
                        now,
                        None,
                    )
                )
                continue
            interval = policy.interval_minutes * MICROS_PER_MINUTE
            spread = (1.3 if policy.active else 3.0) - 0.02
            latest = now - int((0.02 + spread * rng()) * interval)
            history = HISTORY[int(rng() * 4)]
            # Some failing users failed twice in a row: unresolvedFailureCount counts both.
            failed_twice = status == FAILED_STATUS and history > 1 and rng() < 0.3
            final_state = STATE_OF[status]
            service = policy.services.split(",", 1)[0]
            version = 1
            current_run = last_finished = error_code = None
            for k in range(history):
                started = latest - (history - 1 - k) * interval
                last = k == history - 1
                # The run that left the user in its status; earlier ones succeeded.
                repeated = failed_twice and k == history - 2
                state = final_state if last or repeated else SUCCEEDED
                initial = k == 0
                if initial:
                    total = 2_000 + int(rng() * 38_001)
                    duration = int((20 + 1_780 * rng()) * 1_000_000)
                else:
                    total = 5 + int(rng() * 1_496)
                    duration = int((20 + 220 * rng()) * 1_000_000)
                finished: int | None
                code = message = None
                if state == RUNNING:
                    processed = int(rng() * (total + 1))
                    finished = None
                else:
                    finished = min(now, started + duration)
                    processed = total
                    if state == FAILED:
                        code, message = run_errors[int(rng() * len(run_errors))]
                        processed = int(rng() * (total // 3 + 1))
                changes = processed // (5 + int(rng() * 16))
                started_hour = started // MICROS_PER_HOUR
                started_by_hour[started_hour] = started_by_hour.get(started_hour, 0) + 1
                failed_count = 0
                if finished is not None:
                    fkey = (finished // MICROS_PER_HOUR, FINISHED_OF[state])
                    finished_by[fkey] = finished_by.get(fkey, 0) + 1
                    if state == FAILED:  # the user's cause when it is its last run
                        assert code is not None
                        triage.failed(code, message, finished, 0)
                        if last:
                            error_code = code
                            triage.users[code] += 1
                    elif state == WARNED:
                        for n in range(1 + int(rng() * 4)):
                            item_type, item_code, item_message = item_errors[
                                int(rng() * len(item_errors))
                            ]
                            items.append(
                                (
                                    tenant,
                                    run_id,
                                    f"{item_type}-{run_id}-{n}",
                                    item_type,
                                    item_code,
                                    item_message,
                                    finished,
                                )
                            )
                            failed_count += 1
                if started > day_ago and changes:
                    minute = (finished or now) // MICROS_PER_MINUTE
                    changes_by_minute[minute] = changes_by_minute.get(minute, 0) + changes
                runs.append(
                    (
                        run_id,
                        tenant,
                        uid,
                        "INITIAL" if initial else "DELTA",
                        service,
                        state,
                        started,
                        finished,
                        total,
                        processed,
                        failed_count,
                        changes,
                        code,
                        message,
                        # A running run's worker reported as the seed wrote it.
                        now if finished is None else None,
                    )
                )
                if state == RUNNING:
                    current_run = run_id
                    version += 1
                else:
                    last_finished = run_id
                    version += 2
                run_id += 1
            latest_moves[(latest // MICROS_PER_HOUR, key, status)] += 1
            unresolved = (2 if failed_twice else 1) if status == FAILED_STATUS else 0
            users.append(
                (
                    uid,
                    tenant,
                    email,
                    destination,
                    policy.id,
                    status,
                    latest,
                    latest,
                    latest + interval,
                    False,
                    current_run,
                    last_finished,
                    unresolved,
                    version,
                    now,
                    error_code,
                )
            )
        return Rows(users, runs, items)
