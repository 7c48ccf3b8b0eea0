"""The rule that ends runs whose worker went silent (app.lifecycle.timeouts), the reaper's pace
(app.ops.run_reaper) and the setting (SYNCSTATUS_RUN_TIMEOUT_SECONDS)."""

from __future__ import annotations

import pytest

from app.cli.main import main
from app.lifecycle.timeouts import cutoff, lost_message, timed_out
from app.ops.run_reaper import interval_for
from app.web.settings import Settings

S = 1_000_000
NOW = 1_790_000_000 * S
HOUR = 3600.0


def test_a_running_run_times_out_after_the_timeout_without_a_report() -> None:
    assert cutoff(NOW, HOUR) == NOW - 3600 * S
    assert timed_out("RUNNING", NOW - 3600 * S - 1, NOW, HOUR)
    assert not timed_out("RUNNING", NOW - 3600 * S, NOW, HOUR)  # exactly the timeout: not yet
    assert not timed_out("RUNNING", NOW - 60 * S, NOW, HOUR)
    assert timed_out("RUNNING", NOW - 3 * S, NOW, 2.5)  # fractions of a second count


@pytest.mark.parametrize("state", ["SUCCEEDED", "COMPLETED_WITH_WARNING", "FAILED"])
def test_a_finished_run_never_times_out(state: str) -> None:
    assert not timed_out(state, NOW - 100 * 3600 * S, NOW, HOUR)


def test_no_timeout_and_no_recorded_time_end_nothing() -> None:
    assert not timed_out("RUNNING", 0, NOW, 0)
    assert not timed_out("RUNNING", None, NOW, HOUR)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (3600, "60 minutes"),
        (7200, "120 minutes"),
        (90, "90 seconds"),
        (1, "1 second"),
        (2, "2 seconds"),
        (2.5, "2.5 seconds"),
        (150, "150 seconds"),
        (180, "3 minutes"),
    ],
)
def test_the_message_says_how_long_the_worker_was_silent(seconds: float, said: str) -> None:
    assert lost_message(seconds) == (
        f"No report from the sync worker for {said}; syncstatus ended the run."
    )


def test_the_reaper_looks_every_30_seconds_or_twice_per_timeout() -> None:
    assert interval_for(3600) == 30
    assert interval_for(60) == 30
    assert interval_for(2) == 1


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCSTATUS_RUN_TIMEOUT_SECONDS", raising=False)
    assert Settings.from_env().run_timeout_seconds == 3600
    for raw, value in (("0", 0), ("2", 2), (" 90.5 ", 90.5), ("", 3600)):
        monkeypatch.setenv("SYNCSTATUS_RUN_TIMEOUT_SECONDS", raw)
        assert Settings.from_env().run_timeout_seconds == value


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("-1", "must not be negative"),
        ("an hour", "must be a number"),
        ("nan", "must be a finite number"),
        ("inf", "must be a finite number"),
    ],
)
def test_a_bad_setting_stops_the_start_and_names_itself(
    raw: str, said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SYNCSTATUS_RUN_TIMEOUT_SECONDS", raw)
    with pytest.raises(ValueError, match=f"SYNCSTATUS_RUN_TIMEOUT_SECONDS {said}"):
        Settings.from_env()
    assert main(["serve"]) == 2
    assert f"syncstatus: SYNCSTATUS_RUN_TIMEOUT_SECONDS {said}" in capsys.readouterr().err
