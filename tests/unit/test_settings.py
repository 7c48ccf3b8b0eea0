"""A bad setting stops `syncstatus serve` before anything starts, with one line naming it and
exit status 2: never a traceback from inside uvicorn's start, nor a port that wraps around."""

from __future__ import annotations

import json

import pytest

from app.cli.main import main
from app.web.settings import Settings

BAD = [
    ("SYNCSTATUS_PORT", "abc", "SYNCSTATUS_PORT must be a number"),
    ("SYNCSTATUS_PORT", "99999", "SYNCSTATUS_PORT must be a port from 1 to 65535"),
    ("SYNCSTATUS_PORT", "0", "SYNCSTATUS_PORT must be a port from 1 to 65535"),
    ("SYNCSTATUS_LOG_LEVEL", "verbose", "SYNCSTATUS_LOG_LEVEL must be one of"),
    ("SYNCSTATUS_WS_INIT_TIMEOUT_SECONDS", "1e300", "must be at most 1000000000"),
    ("SYNCSTATUS_BROADCAST_URL", "foo://x", "unsupported broadcast URL scheme 'foo'"),
    ("SYNCSTATUS_SECRET_KEY", "short", "SYNCSTATUS_SECRET_KEY needs at least 32 characters"),
    ("SYNCSTATUS_WEBHOOK_TIMEOUT_SECONDS", "soon", "SYNCSTATUS_WEBHOOK_TIMEOUT_SECONDS must be"),
    ("SYNCSTATUS_WEBHOOK_POLL_SECONDS", "nan", "SYNCSTATUS_WEBHOOK_POLL_SECONDS must be"),
    # Checked only inside the app's start, they were tracebacks (status 1).
    ("SYNCSTATUS_CORS_ORIGINS", "notanorigin", "SYNCSTATUS_CORS_ORIGINS"),
    ("SYNCSTATUS_FRAME_ANCESTORS", "<script>", "SYNCSTATUS_FRAME_ANCESTORS"),
    ("SYNCSTATUS_DATABASE_URL", "garbage", "SYNCSTATUS_DATABASE_URL is not a database URL"),
    ("SYNCSTATUS_DATABASE_URL", "sqlite:////no/such/folder/x.db", "no folder '/no/such/folder'"),
    # Accepted, and then no delivery ever fitted.
    ("SYNCSTATUS_WEBHOOK_ENDPOINT_CONCURRENCY", "0", "must be more than 0"),
    ("SYNCSTATUS_WEBHOOK_TIMEOUT_SECONDS", "0", "must be more than 0"),
]


def _refuse_to_serve(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the bad setting was accepted: uvicorn was started")


@pytest.fixture(autouse=True)
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a bad setting accepted, `serve` would serve until killed: fail at once instead."""
    monkeypatch.setattr("uvicorn.run", _refuse_to_serve)


def _refused(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> str:
    """What `syncstatus serve` writes to stderr as it refuses to start with `env`."""
    monkeypatch.setenv("SYNCSTATUS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/never.db")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    return capsys.readouterr().err


def test_a_port_argument_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", "99999"])
    assert exited.value.code == 2
    assert "a port is from 1 to 65535, not 99999" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "raw", "said"), BAD, ids=[f"{n}={r}" for n, r, _ in BAD])
def test_a_bad_setting_is_one_line_and_status_2(
    name: str,
    raw: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    err = _refused({name: raw}, monkeypatch, capsys, tmp_path)
    assert said in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("name", "raw", "said"),
    [
        ("SYNCSTATUS_BROADCAST_URL", "foo://x", "unsupported broadcast URL"),
        # Read with the log format itself (Settings.from_env), before logging is set up.
        ("SYNCSTATUS_PORT", "99999", "SYNCSTATUS_PORT must be a port from 1 to 65535"),
    ],
)
def test_with_json_logs_a_refusal_is_a_json_line(
    name: str,
    raw: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    env = {"SYNCSTATUS_LOG_FORMAT": "json", name: raw}
    (line,) = _refused(env, monkeypatch, capsys, tmp_path).strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "error" and said in record["message"], record


def test_a_blank_host_is_the_default_not_every_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty SYNCSTATUS_HOST bound 0.0.0.0 and [::]: /metrics and /healthz for anyone."""
    monkeypatch.setenv("SYNCSTATUS_HOST", " ")
    assert Settings.from_env().host == "127.0.0.1"
    monkeypatch.setenv("SYNCSTATUS_HOST", "0.0.0.0")
    assert Settings.from_env().host == "0.0.0.0"
