"""The WebSocket timing settings: SYNCSTATUS_WS_INIT_TIMEOUT_SECONDS (connection_init's deadline)
and SYNCSTATUS_WS_PING_SECONDS (the server's ping interval), and that the app uses them."""

from __future__ import annotations

import pytest

from app.cli.main import main
from app.web.asgi import SyncStatusGraphQL
from app.web.settings import Settings

INIT = "SYNCSTATUS_WS_INIT_TIMEOUT_SECONDS"
PING = "SYNCSTATUS_WS_PING_SECONDS"


def test_the_defaults_are_5_and_15_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INIT, raising=False)
    monkeypatch.delenv(PING, raising=False)
    settings = Settings.from_env()
    assert (settings.ws_init_timeout_seconds, settings.ws_ping_seconds) == (5, 15)
    assert (Settings().ws_init_timeout_seconds, Settings().ws_ping_seconds) == (5, 15)
    graphql = SyncStatusGraphQL()
    assert graphql.connection_init_wait_timeout.total_seconds() == 5
    assert graphql.pinger.interval == 15


@pytest.mark.parametrize(
    ("name", "field"), [(INIT, "ws_init_timeout_seconds"), (PING, "ws_ping_seconds")]
)
def test_the_setting(name: str, field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    default = getattr(Settings(), field)
    for raw, value in (("1", 1), (" 0.25 ", 0.25), ("30", 30), ("", default), ("  ", default)):
        monkeypatch.setenv(name, raw)
        assert getattr(Settings.from_env(), field) == value


def test_the_app_uses_them() -> None:
    graphql = SyncStatusGraphQL(init_timeout_seconds=1.5, ping_seconds=0.5)
    assert graphql.connection_init_wait_timeout.total_seconds() == 1.5
    assert graphql.pinger.interval == 0.5


@pytest.mark.parametrize("name", [INIT, PING])
@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("0", "must be more than 0"),
        ("-1", "must not be negative"),
        ("5s", "must be a number"),
        ("nan", "must be a finite number"),
        ("inf", "must be a finite number"),
    ],
)
def test_a_bad_setting_stops_the_start_and_names_itself(
    name: str,
    raw: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError, match=f"{name} {said}"):
        Settings.from_env()
    assert main(["serve"]) == 2
    assert f"syncstatus: {name} {said}" in capsys.readouterr().err
