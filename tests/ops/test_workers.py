"""`serve --workers N`: several processes on one port, PostgreSQL and a shared broker only,
metrics summed over the workers (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.api_tests.conftest import new_tenant
from tests.api_tests.helpers import add_users, finish, start
from tests.ops.metrics_scrape import scrape, value
from tests.server import ROOT, Server, free_port, postgres_database, run_server, sqlite_database
from tests.services import postgres_admin_url, redis_url

SUBSCRIBE = "subscription($ids: [ID!]!) { syncUserUpdated(userIds: $ids) { id status } }"


def _workers_of(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children |= {int(c) for c in (task / "children").read_text().split()}
    return {
        child
        for child in children
        if b"multiprocessing" in Path(f"/proc/{child}/cmdline").read_bytes()
        and b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    }


@pytest.fixture(scope="module")
def two_workers() -> Iterator[Server]:
    with (
        postgres_database(postgres_admin_url()) as url,
        run_server(
            url,
            env={"SYNCSTATUS_BROADCAST_URL": redis_url(), "SYNCSTATUS_LOG_LEVEL": "info"},
            args=("--workers", "2"),
        ) as server,
    ):
        deadline = time.monotonic() + 60
        while server.log().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, "two workers never started"
            time.sleep(0.1)
        assert "died" not in server.log()
        assert len(_workers_of(server.process.pid)) == 2
        yield server


@contextmanager
def only(server: Server, pid: int) -> Iterator[None]:
    """New connections go to worker `pid` alone: the others are paused (SIGSTOP), so only it
    accepts from the listening socket the workers share."""
    others = _workers_of(server.process.pid) - {pid}
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def _answered_by(server: Server, path: str) -> int:
    with httpx.Client(timeout=5) as client:  # a new connection
        response = client.get(f"{server.url}{path}")
        assert response.status_code == 200
        return int(client.get(f"{server.url}/healthz").json()["process"]["pid"])


@pytest.mark.parametrize(
    ("database", "broker", "says"),
    [("sqlite", "redis", "PostgreSQL"), ("postgres", "memory://", "redis://")],
)
def test_more_than_one_worker_needs_postgres_and_a_shared_broker(
    database: str, broker: str, says: str
) -> None:
    def refused(url: str) -> None:
        env = {
            **os.environ,
            "SYNCSTATUS_DATABASE_URL": url,
            "SYNCSTATUS_BROADCAST_URL": redis_url() if broker == "redis" else broker,
        }
        serve = ["serve", "--port", str(free_port()), "--workers", "2"]
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *serve],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 2 and says in result.stderr, result.stderr

    if database == "sqlite":
        with sqlite_database() as url:
            refused(url)
    else:
        with postgres_database(postgres_admin_url()) as url:
            refused(url)


def test_two_workers_serve_and_their_metrics_add_up(two_workers: Server) -> None:
    workers = _workers_of(two_workers.process.pid)
    labels = {"route": "/livez", "method": "GET", "status": "200"}
    before = value(scrape(two_workers.url), "syncstatus_http_requests_total", **labels)
    for pid in workers:
        with only(two_workers, pid):
            assert {_answered_by(two_workers, "/livez") for _ in range(10)} == {pid}
    for pid in workers:  # whichever worker answers the scrape, it counts them all
        with only(two_workers, pid):
            after = value(scrape(two_workers.url), "syncstatus_http_requests_total", **labels)
        assert after - before == 20


async def test_events_cross_workers_and_a_killed_worker_is_replaced(two_workers: Server) -> None:
    tenant = new_tenant(two_workers, "workers")
    (user,) = await add_users(tenant.admin, ["w@src.example"])
    sockets = []
    for pid in _workers_of(two_workers.process.pid):  # three subscribers on each worker
        with only(two_workers, pid):
            for _ in range(3):
                sockets.append(await _subscribe(two_workers, tenant.viewer.token, user["id"]))
    gauge = "syncstatus_subscriptions"
    await _until(lambda: value(scrape(two_workers.url), gauge, kind="users") == 6)
    run = await start(tenant.worker, user["id"])  # on either worker
    await finish(tenant.worker, run["id"])
    for ws in sockets:  # every subscriber, on either worker, hears both changes
        seen = []
        while "SYNCED" not in seen:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] != "next":  # the server's keepalive pings come in between
                continue
            seen.append(message["payload"]["data"]["syncUserUpdated"]["status"])

    victims = _workers_of(two_workers.process.pid)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for ws in sockets:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    # Two replacements import the app at once: on a loaded 2-core machine (four busy loops
    # beside it) the whole test took 44 s, and a CI run missed 30 s here by 36 ms.
    await _until(lambda: len(_workers_of(two_workers.process.pid) - victims) == 2, within=90)
    # The dead workers' subscriptions no longer count.
    await _until(lambda: _scrape_or_none(two_workers, gauge) == 0)


async def _subscribe(server: Server, token: str | None, user_id: str) -> ClientConnection:
    ws = await websockets.connect(
        server.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )
    init = {"authorization": f"Bearer {token}"}
    await ws.send(json.dumps({"type": "connection_init", "payload": init}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": SUBSCRIBE, "variables": {"ids": [user_id]}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


def _scrape_or_none(server: Server, name: str) -> float | None:
    try:
        return value(scrape(server.url), name, kind="users")
    except httpx.HTTPError:
        return None  # the replacements are still starting


async def _until(condition: object, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.2)
