"""Servers forked from the test process's forkserver (tests/preforked.py) behave as the
`python -m app.cli serve` subprocesses they replace: their own process, environment and log,
the same exit codes and signals."""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import pytest

from tests import preforked
from tests.server import ROOT, free_port, run_server, sqlite_database

ORIGIN = "https://portal.partner.example"
pytestmark = pytest.mark.skipif(
    not preforked.usable(["serve"], {}), reason="forked servers are off in this run"
)


def test_a_forked_server_runs_with_its_own_environment_and_stops_cleanly() -> None:
    env = {"SYNCSTATUS_CORS_ORIGINS": ORIGIN, "SYNCSTATUS_LOG_LEVEL": "info"}
    with sqlite_database() as url, run_server(url, env=env) as server:
        process = server.process
        assert isinstance(process, preforked.ForkedProcess)
        assert process.pid != os.getpid() and process.poll() is None
        health = httpx.get(f"{server.url}/healthz").json()
        assert health["process"]["pid"] == process.pid
        # Settings come from the environment the test gave, not the forkserver's.
        allowed = httpx.get(f"{server.url}/healthz", headers={"Origin": ORIGIN})
        assert allowed.headers.get("access-control-allow-origin") == ORIGIN
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.1)
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it handled (as in a
        # subprocess: tests/ops/test_drain.py).
        assert process.wait(timeout=30) == -signal.SIGTERM == process.returncode
        log = server.log()
    assert "did not import" not in log  # the forkserver preloaded the app
    assert "Application shutdown complete" in log  # uvicorn's own log went to the file


def test_a_killed_forked_server_reports_the_signal_as_popen_does() -> None:
    with sqlite_database() as url, run_server(url) as server:
        server.process.kill()
        assert server.process.wait(timeout=30) == -signal.SIGKILL


def test_a_forked_server_that_cannot_start_exits_with_the_clis_code() -> None:
    env = {"SYNCSTATUS_CORS_ORIGINS": "not a url"}
    with (
        sqlite_database() as url,
        pytest.raises(RuntimeError, match="server exited") as error,
        run_server(url, env=env),
    ):
        pass  # pragma: no cover - it must not start
    assert "SYNCSTATUS_CORS_ORIGINS" in str(error.value)


def test_what_a_fresh_interpreter_decides_keeps_a_fresh_interpreter() -> None:
    assert preforked.usable(["serve", "--users", "5"], {})
    assert preforked.usable(["token", "list", "--tenant", "Acme"], {})
    assert not preforked.usable(["serve", "--workers", "2"], {})
    assert not preforked.usable(["serve"], {"PYTHONTRACEMALLOC": "5"})


def test_a_forked_command_gives_what_subprocess_run_gives() -> None:
    """run_cli's forked commands: stdout and stderr apart, the CLI's exit status, the
    environment and directory given."""
    with sqlite_database() as url:
        env = {**os.environ, "SYNCSTATUS_DATABASE_URL": url}
        made = preforked.run(
            ["token", "create", "--tenant", "Acme", "--role", "viewer", "--create-tenant"],
            env,
            ROOT,
            60,
        )
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip() and "did not import" not in made.stderr
        missing = preforked.run(["token", "list", "--tenant", "Nobody"], env, ROOT, 60)
        assert missing.returncode == 1 and missing.stdout == ""
        assert "Nobody" in missing.stderr
        refused = preforked.run(["token", "create", "--role", "king"], env, ROOT, 60)
        assert refused.returncode == 2 and "king" in refused.stderr


def test_a_forked_command_past_its_timeout_is_killed() -> None:
    with sqlite_database() as url, pytest.raises(subprocess.TimeoutExpired):
        env = {**os.environ, "SYNCSTATUS_DATABASE_URL": url}
        preforked.run(["serve", "--port", str(free_port())], env, ROOT, 1)
