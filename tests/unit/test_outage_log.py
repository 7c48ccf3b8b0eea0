"""app.ops.outage.OutageLog: a background loop retrying through an outage says so once (it
wrote a ~100-line traceback every second per tenant with metrics subscribers), and a bug
keeps its traceback every time."""

from __future__ import annotations

import logging

import pytest

from app.ops.outage import OutageLog


def test_an_outage_is_one_line_when_it_begins_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = OutageLog(logging.getLogger("test.outage"), "reading the metrics of tenant 7")
    with caplog.at_level(logging.INFO, "test.outage"):
        for _ in range(30):
            failures.failed(ConnectionRefusedError(111, "Connect call failed"))
        failures.succeeded()
        failures.succeeded()
        failures.failed(TimeoutError())
    messages = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    assert messages == [
        (
            "WARNING",
            "reading the metrics of tenant 7 failed: [Errno 111] Connect call failed "
            "(an outage; retrying quietly)",
            None,
        ),
        ("WARNING", "reading the metrics of tenant 7 works again", None),
        (
            "WARNING",
            "reading the metrics of tenant 7 failed: TimeoutError (an outage; retrying quietly)",
            None,
        ),
    ]


def test_a_bug_keeps_its_traceback_every_time(caplog: pytest.LogCaptureFixture) -> None:
    failures = OutageLog(logging.getLogger("test.outage"), "webhook delivery")
    with caplog.at_level(logging.INFO, "test.outage"):
        empty: dict[str, int] = {}
        for _ in range(2):
            try:
                empty["missing"]
            except KeyError as error:
                failures.failed(error)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "webhook delivery failed")
    ] * 2
    assert all(r.exc_info is not None for r in caplog.records)
