"""The pure pieces of failure triage: CSV cells and lines, export parameters, trend windows,
the triage counters' deltas."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter

import pytest

from app.demo.seed import RUN_ERRORS
from app.demo.simulation import RUN_ERROR_WEIGHTS, plan_run
from app.domain.errors import BadUserInput
from app.domain.timeutil import MICROS_PER_HOUR
from app.reads.trends import MAX_BUCKETS, window
from app.store.triage_counters import TriageMoves
from app.web.csv_export import csv_lines, neutralise, parse_query

H = MICROS_PER_HOUR
DAY = 24 * H


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        (" =1", " =1"),
        ("", ""),
        ("'quoted", "'quoted"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    ],
)
def test_neutralise(cell: str, shown: str) -> None:
    assert neutralise(cell) == shown


def test_lines_are_rfc_4180() -> None:
    text = csv_lines([["a,b", 'say "hi"', "two\nlines", "=x", "plain"]])
    assert text == '"a,b","say ""hi""","two\nlines",\'=x,plain\r\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["a,b", 'say "hi"', "two\nlines", "'=x", "plain"]
    ]


def test_query_parameters() -> None:
    filt, order = parse_query(
        [
            ("status", "FAILED"),
            ("errorCode", " ERR_X "),
            ("orderBy", "LATEST_SYNC_DESC"),
            ("latestSyncFrom", "2026-01-01T01:00:00+01:00"),
            ("emailContains", ""),
        ]
    )
    assert order == "LATEST_SYNC_DESC"
    assert (filt.status, filt.error_code, filt.email_contains) == ("FAILED", "ERR_X", None)
    assert filt.latest_sync_from == 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    assert parse_query([]) == (parse_query([])[0], "EMAIL_ASC")
    for bad in (
        [("token", "sst_x")],
        [("status", "nope")],
        [("orderBy", "x")],
        [("latestSyncTo", "soon")],
        [("policyId", "garbage")],
        [("status", "FAILED"), ("status", "FAILED")],
        [("emailContains", "\ud800")],
    ):
        with pytest.raises(BadUserInput):
            parse_query(bad)


def test_windows() -> None:
    start = 1_000 * H + 17  # inside hour 1000
    assert window(start, start, "HOUR") == window(1_000 * H, 1_001 * H - 1, "HOUR")
    span = window(start, start + 5 * H, "HOUR")
    assert (span.first, span.count, span.first_hour, span.last_hour) == (1000, 6, 1000, 1005)
    days = window(3 * DAY + 5, 4 * DAY, "DAY")
    assert (days.first, days.count, days.first_hour, days.last_hour) == (3, 2, 72, 119)
    assert window(0, (MAX_BUCKETS["HOUR"] - 1) * H, "HOUR").count == MAX_BUCKETS["HOUR"]
    assert window(0, (MAX_BUCKETS["DAY"] - 1) * DAY, "DAY").count == MAX_BUCKETS["DAY"]
    for since, until, bucket in (
        (1, 0, "HOUR"),
        (0, MAX_BUCKETS["HOUR"] * H, "HOUR"),
        (0, MAX_BUCKETS["DAY"] * DAY, "DAY"),
        (0, 0, "WEEK"),
    ):
        with pytest.raises(BadUserInput):
            window(since, until, bucket)


def test_triage_deltas() -> None:
    moves = TriageMoves()
    moves.failed("ERR_B", "old", 10)
    moves.failed("ERR_B", None, 30)  # the latest wins, message or not
    moves.failed("ERR_B", "older", 20)
    moves.cleared("ERR_A")
    moves.cleared(None)
    moves.count(5 * H + 1, "runs_started")
    moves.count(5 * H + 2, "runs_started")
    moves.count(7 * H, "changes", 40)
    moves.count(7 * H, "changes", 0)
    writes = moves.writes("sqlite", 9)
    reasons, emptied, trends = writes
    assert reasons[1] == [
        {
            "tenant_id": 9,
            "error_code": "ERR_A",
            "user_count": -1,
            "sample_message": "",
            "last_seen_at": 0,
        },
        {
            "tenant_id": 9,
            "error_code": "ERR_B",
            "user_count": 3,
            "sample_message": "",
            "last_seen_at": 30,
        },
    ]
    assert emptied[1] == {"tenant": 9, "codes": ["ERR_A"]}
    assert isinstance(trends[1], list)
    assert [(row["hour"], row["runs_started"], row["changes"]) for row in trends[1]] == [
        (5, 2, 0),
        (7, 0, 40),
    ]
    assert TriageMoves().writes("postgresql", 1) == []


def test_the_demo_fails_for_several_causes() -> None:
    """The simulated workers' failures: a realistic mix, the commonest cause about a quarter
    of them, so failureReasons shows several causes."""
    rng = random.Random(3)
    codes = Counter(
        plan.error[0]
        for plan in (plan_run(rng, "DELTA") for _ in range(4000))
        if plan.error is not None
    )
    assert (
        set(codes) == set(RUN_ERROR_WEIGHTS) and set(RUN_ERROR_WEIGHTS) <= dict(RUN_ERRORS).keys()
    )
    total = sum(codes.values())
    assert 0.07 < total / 4000 < 0.13
    assert 0.15 < max(codes.values()) / total < 0.4
