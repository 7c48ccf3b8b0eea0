"""The simulated sync engine's policy: what one run does, decided up front from a seeded RNG.

Pure (no I/O, no clock): both drivers follow the same plans, app.demo.simulator inside the server
through the run lifecycle and app.demo.worker in a separate process through the GraphQL mutations.
A plan is a list of progress reports with the delay before each, then how the run ends.
Counters in the reports are cumulative and never go down, as the contract requires.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from app.domain.statuses import RunState, finished_state

# The feel of the demo: a handful of runs in flight, a report every 0.5-1 s, runs of 5-30 s,
# about one run in ten failing and about one in seven completing with warnings.
MAX_IN_FLIGHT = 6
STARTS_PER_TICK = 2  # new runs per poll, so runs start staggered rather than in waves
RUN_FAILURE_RATE = 0.10
WARNING_RATE = 0.15  # of all runs, so warnings among the runs that do not fail: 0.15 / 0.9
REPORT_INTERVAL = (0.5, 1.0)
DURATION = {"INITIAL": (12.0, 30.0), "DELTA": (5.0, 20.0)}
ITEMS_TOTAL = {"INITIAL": (2_000, 40_000), "DELTA": (5, 1_500)}
CHANGES_PER_ITEM = (0.05, 0.2)
# The run and item errors of the demo data, seeded (app.demo.seed) and simulated alike.
RUN_ERRORS = (
    ("ERR_TOKEN_001", "Authentication token expired"),
    ("ERR_USER_404", "User not found in source tenant"),
    ("ERR_RATE_429", "API rate limit exceeded (Microsoft Graph throttling)"),
    ("ERR_QUOTA_507", "Destination mailbox storage quota exceeded"),
    ("ERR_PERM_403", "Insufficient permissions on the source mailbox"),
    ("ERR_LICENSE_402", "Destination user has no Google Workspace license"),
    ("ERR_HOLD_423", "Source mailbox is on litigation hold; export is blocked"),
)
ITEM_ERRORS = (
    ("message", "ERR_ITEM_SIZE", "Message exceeds the 25 MB destination size limit"),
    ("attachment", "ERR_ATTACH_BLOCKED", "Attachment type is blocked by the destination"),
    ("folder", "ERR_FOLDER_NAME", "Folder name contains characters not allowed in labels"),
    ("event", "ERR_EVENT_RECURRENCE", "Recurrence pattern is not supported"),
    ("contact", "ERR_CONTACT_INVALID", "Contact has no name or email address"),
)
# How often each run error happens, and whether it stops the run before it gets going.
RUN_ERROR_WEIGHTS = {
    "ERR_TOKEN_001": 4,
    "ERR_USER_404": 2,
    "ERR_RATE_429": 3,
    "ERR_QUOTA_507": 1,
    "ERR_PERM_403": 1,
    "ERR_LICENSE_402": 2,
    "ERR_HOLD_423": 1,
}
EARLY_ERRORS = frozenset({"ERR_USER_404", "ERR_PERM_403", "ERR_LICENSE_402", "ERR_HOLD_423"})
ITEM_TYPES_OF_SERVICE = {
    "MAIL": ("message", "attachment", "folder"),
    "CALENDAR": ("event",),
    "CONTACTS": ("contact",),
}
DRIVE_ITEM_ERROR = ("file", "ERR_FILE_SIZE", "File exceeds the destination upload size limit")


@dataclass(frozen=True, slots=True)
class ItemFailure:
    item_id: str
    item_type: str
    error_code: str
    error_message: str


@dataclass(frozen=True, slots=True)
class Step:
    """One progress report, sent `delay` seconds after the previous one."""

    delay: float
    items_processed: int
    changes: int
    items_total: int | None  # reported with the first step: the worker has counted the items
    failed_items: tuple[ItemFailure, ...]


@dataclass(frozen=True, slots=True)
class RunPlan:
    items_total: int
    steps: tuple[Step, ...]
    finish_delay: float
    error: tuple[str, str] | None  # (errorCode, errorMessage) when the run fails

    @property
    def duration(self) -> float:
        return sum(step.delay for step in self.steps) + self.finish_delay

    @property
    def items_failed(self) -> int:
        return sum(len(step.failed_items) for step in self.steps)

    @property
    def outcome(self) -> RunState:
        """The RunState finishSyncRun will give the run (for a run without earlier failures)."""
        return finished_state(self.error is not None, self.items_failed)


def rng_for(run_key: str, seed: int | None = None) -> random.Random:
    """The RNG of one run: the same run key and seed give the same plan."""
    return random.Random(f"{seed}:{run_key}") if seed is not None else random.Random()


def plan_run(
    rng: random.Random,
    kind: str,
    service: str = "MAIL",
    *,
    items_total: int | None = None,
    items_processed: int = 0,
    changes: int = 0,
) -> RunPlan:
    """A plan for a run that has processed `items_processed` items with `changes` changes so far
    (0 for a new run; more when taking over a run a stopped worker left RUNNING)."""
    low, high = ITEMS_TOTAL.get(kind, ITEMS_TOTAL["DELTA"])
    total = max(items_total if items_total is not None else rng.randint(low, high), items_processed)
    duration = rng.uniform(*DURATION.get(kind, DURATION["DELTA"]))
    delays: list[float] = []
    while sum(delays) < duration or not delays:
        delays.append(round(rng.uniform(*REPORT_INTERVAL), 3))
    finish_delay = delays.pop() if len(delays) > 1 else 0.0

    error = _pick_error(rng) if rng.random() < RUN_FAILURE_RATE else None
    if error:
        # The run stops part way: at once for a user or permission problem, later otherwise.
        share = rng.uniform(0.0, 0.1) if error[0] in EARLY_ERRORS else rng.uniform(0.1, 0.9)
        delays = delays[: max(1, round(len(delays) * share))]
    warns = rng.random() < WARNING_RATE / (1 - RUN_FAILURE_RATE)

    processed = _progress(rng, len(delays), items_processed, total, complete=error is None)
    if error and error[0] in EARLY_ERRORS:
        processed = [items_processed] * len(delays)
    ratio = rng.uniform(*CHANGES_PER_ITEM)
    failures = _failures(rng, service, processed, items_processed) if warns else {}
    steps = tuple(
        Step(
            delay=delay,
            items_processed=done,
            changes=changes + int((done - items_processed) * ratio),
            items_total=total if k == 0 else None,
            failed_items=failures.get(k, ()),
        )
        for k, (delay, done) in enumerate(zip(delays, processed, strict=True))
    )
    return RunPlan(items_total=total, steps=steps, finish_delay=finish_delay, error=error)


def _pick_error(rng: random.Random) -> tuple[str, str]:
    messages = dict(RUN_ERRORS)
    codes = [code for code in RUN_ERROR_WEIGHTS if code in messages]
    code = rng.choices(codes, [RUN_ERROR_WEIGHTS[c] for c in codes])[0]
    return code, messages[code]


def _progress(
    rng: random.Random, steps: int, start: int, total: int, *, complete: bool
) -> list[int]:
    """Cumulative items processed after each step: uneven steps, never down, `total` at the end
    of a complete run, short of it for a run that fails."""
    weights = [rng.uniform(0.4, 1.6) for _ in range(steps)]
    scale = sum(weights) * (1.0 if complete else rng.uniform(1.2, 3.0))
    done, out = 0.0, []
    for weight in weights:
        done += weight
        out.append(start + int((total - start) * done / scale))
    if complete:
        out[-1] = total
    return out


def _failures(
    rng: random.Random, service: str, processed: list[int], start: int
) -> dict[int, tuple[ItemFailure, ...]]:
    """A few failed items, each reported with a step by which at least that many items were
    processed; item ids are unique within the run."""
    types = ITEM_TYPES_OF_SERVICE.get(service)
    catalog = [e for e in ITEM_ERRORS if types is None or e[0] in types] or list(ITEM_ERRORS)
    if service == "DRIVE":
        catalog = [DRIVE_ITEM_ERROR]
    count = min(rng.randint(1, 5), processed[-1] - start)
    by_step: dict[int, list[ItemFailure]] = {}
    seen: set[str] = set()
    for n in range(count):
        eligible = [k for k, done in enumerate(processed) if done - start > n]
        step = rng.choice(eligible)
        item_type, code, message = rng.choice(catalog)
        item_id = f"{item_type}/{rng.getrandbits(64):016x}"
        if item_id in seen:
            continue
        seen.add(item_id)
        by_step.setdefault(step, []).append(ItemFailure(item_id, item_type, code, message))
    return {k: tuple(items) for k, items in by_step.items()}
