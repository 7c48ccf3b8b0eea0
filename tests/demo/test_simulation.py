"""The simulation policy (app.demo.simulation): pure and seeded, so its promises are checked
exactly."""

from __future__ import annotations

import itertools
from collections import Counter

from app.demo.seed import ITEM_ERRORS, RUN_ERRORS
from app.demo.simulation import (
    DURATION,
    REPORT_INTERVAL,
    RunPlan,
    plan_run,
    rng_for,
)
from app.domain.statuses import RunState

KINDS = ("INITIAL", "DELTA")
SERVICES = ("MAIL", "CALENDAR", "CONTACTS", "DRIVE")


def plans(n: int = 3000) -> list[tuple[str, str, RunPlan]]:
    out = []
    for k in range(n):
        kind, service = KINDS[k % 2], SERVICES[k % 4]
        out.append((kind, service, plan_run(rng_for(f"run-{k}", seed=42), kind, service)))
    return out


def test_same_seed_same_plan_and_seeds_differ() -> None:
    assert plan_run(rng_for("r1", 1), "DELTA") == plan_run(rng_for("r1", 1), "DELTA")
    assert plan_run(rng_for("r1", 1), "DELTA") != plan_run(rng_for("r2", 1), "DELTA")


def test_outcome_mix_is_lively_but_mostly_green() -> None:
    outcomes = Counter(plan.outcome for _, _, plan in plans())
    total = sum(outcomes.values())
    assert 0.07 < outcomes[RunState.FAILED] / total < 0.13
    assert 0.11 < outcomes[RunState.COMPLETED_WITH_WARNING] / total < 0.19
    assert outcomes[RunState.SUCCEEDED] / total > 0.65
    codes = {plan.error[0] for _, _, plan in plans() if plan.error}
    assert {"ERR_TOKEN_001", "ERR_USER_404", "ERR_RATE_429"} <= codes


def test_every_plan_follows_the_contract() -> None:
    for kind, service, plan in plans():
        check_plan(kind, service, plan)


def check_plan(kind: str, service: str, plan: RunPlan) -> None:
    steps = plan.steps
    assert steps, "every run reports at least once"
    # The worker learns the total with its first report, then only cumulative counters.
    assert steps[0].items_total == plan.items_total
    assert all(step.items_total is None for step in steps[1:])
    for before, after in itertools.pairwise(steps):
        assert after.items_processed >= before.items_processed
        assert after.changes >= before.changes
    assert all(0 <= step.items_processed <= plan.items_total for step in steps)
    assert all(REPORT_INTERVAL[0] <= step.delay <= REPORT_INTERVAL[1] for step in steps)
    low, high = DURATION[kind]
    if plan.error is None:
        assert steps[-1].items_processed == plan.items_total
        assert low <= plan.duration <= high + REPORT_INTERVAL[1]
    else:
        assert plan.error in RUN_ERRORS
        assert steps[-1].items_processed < plan.items_total or plan.items_total == 0
        assert plan.duration <= high + REPORT_INTERVAL[1]
    items = [item for step in steps for item in step.failed_items]
    assert len({item.item_id for item in items}) == len(items), "item ids unique in a run"
    catalog = {(t, code, message) for t, code, message in ITEM_ERRORS}
    for item in items:
        known = (item.item_type, item.error_code, item.error_message) in catalog
        assert known or service == "DRIVE"


def test_runs_last_5_to_30_seconds_with_reports_every_half_to_one_second() -> None:
    durations = [plan.duration for _, _, plan in plans() if plan.error is None]
    assert min(durations) >= 5.0 and max(durations) <= 31.0
    assert 10.0 < sum(durations) / len(durations) < 20.0


def test_taking_over_a_run_continues_from_its_counters() -> None:
    plan = plan_run(
        rng_for("adopted", 3), "INITIAL", items_total=5000, items_processed=1200, changes=90
    )
    assert plan.items_total == 5000
    assert all(step.items_processed >= 1200 and step.changes >= 90 for step in plan.steps)
    if plan.error is None:
        assert plan.steps[-1].items_processed == 5000


def test_a_finished_count_is_not_undone() -> None:
    """A run already at its total (a worker died before finishing) just finishes."""
    plan = plan_run(rng_for("done", 5), "DELTA", items_total=40, items_processed=40, changes=4)
    assert all(step.items_processed == 40 for step in plan.steps)
    assert plan.items_failed == 0
