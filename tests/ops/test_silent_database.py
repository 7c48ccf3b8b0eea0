"""A silent network to PostgreSQL (no reset, no refusal: the packets just stop) is an outage
like any other: requests end with 503 within SYNCSTATUS_DATABASE_TIMEOUT_SECONDS instead of
waiting for TCP's minutes, SIGTERM still stops the process in time, and service resumes when
the network does."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.freezable_proxy import ThreadedProxy
from tests.server import Server, create_token, run_cli, run_server, throwaway_database

TIMEOUT = 2.0  # the server's database timeout
SHUTDOWN = 2.0
QUERY = {"query": "{ syncMetrics { totalUsers } }"}


@pytest.fixture
def frozen_db() -> Iterator[tuple[ThreadedProxy, Server, str]]:
    with throwaway_database("postgres") as url:
        proxy = ThreadedProxy("127.0.0.1", 5432)
        env = {
            "SYNCSTATUS_DATABASE_TIMEOUT_SECONDS": str(TIMEOUT),
            "SYNCSTATUS_SHUTDOWN_TIMEOUT": str(SHUTDOWN),
        }
        try:
            with run_server(url.replace(":5432/", f":{proxy.port}/"), env) as server:
                yield proxy, server, create_token(url, "silent", "viewer")
        finally:
            proxy.close()


def _post(server: Server, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(server.graphql_url, json=QUERY, headers=headers, timeout=60)


def test_requests_end_with_503_and_service_resumes(
    frozen_db: tuple[ThreadedProxy, Server, str],
) -> None:
    proxy, server, token = frozen_db
    assert _post(server, token).json() == {"data": {"syncMetrics": {"totalUsers": 0}}}
    proxy.freeze()
    started = time.monotonic()
    response = _post(server, token)
    took = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    # One statement's timeout, and perhaps a pooled connection's pre-ping and a connect before
    # it: a few timeouts, far from TCP's minutes (before: no answer within 150 s).
    assert took < 4 * TIMEOUT + 5, took
    proxy.thaw()
    deadline = time.monotonic() + 30
    while (response := _post(server, token)).status_code != 200:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


def test_sigterm_stops_the_process_in_time(frozen_db: tuple[ThreadedProxy, Server, str]) -> None:
    proxy, server, token = frozen_db
    assert _post(server, token).status_code == 200
    proxy.freeze()
    assert _post(server, token).status_code == 503  # its connections are stuck now
    started = time.monotonic()
    server.process.terminate()
    server.process.wait(timeout=60)
    # Before: the lifespan's teardown waited on the silent connections for ~60 s.
    assert time.monotonic() - started < SHUTDOWN + 4 * TIMEOUT + 5


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A PostgreSQL URL whose server accepts the connection (the kernel does) and never says
    a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{listener.getsockname()[1]}/x"


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--port", "1"],
        ["token", "list", "--tenant", "t"],
        ["audit", "--tenant", "t"],
        ["db", "upgrade"],
        ["prune", "--days", "1"],
        ["seed", "--tenant", "t", "--users", "10"],  # statements untimed, connecting timed
    ],
    ids=lambda command: command[0],
)
def test_commands_end_with_one_line_when_the_database_is_silent(
    silent_url: str, command: list[str]
) -> None:
    """Before, every command waited forever without a word (the timeout applied to `serve`'s
    requests only)."""
    started = time.monotonic()
    env = {"SYNCSTATUS_DATABASE_TIMEOUT_SECONDS": "1"}
    result = run_cli(silent_url, *command, env=env, timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "database" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
