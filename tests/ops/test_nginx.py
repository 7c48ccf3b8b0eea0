"""deploy/nginx.conf, tested: nginx in front of two `serve` processes on PostgreSQL + Redis.
The page's queries and a subscription go through it; one backend is killed with SIGKILL, and
the client reconnects through the other and receives later updates."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.api_tests.conftest import new_tenant
from tests.api_tests.helpers import add_users, finish, start
from tests.ops.metrics_scrape import scrape, value
from tests.server import ROOT, Server, free_port, postgres_database, run_server
from tests.services import postgres_admin_url, redis_url

DASHBOARD = """query Dashboard($after: String) {
  syncMetrics { usersWithActivePolicy changesLast24h syncsInProgress failedSyncs asOf }
  syncUsers(first: 10, after: $after) { totalCount pageInfo { hasNextPage endCursor }
    edges { node { id email status version } } } }"""
SUBSCRIBE = "subscription($ids: [ID!]!) { syncUserUpdated(userIds: $ids) { id status } }"


def _nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        reason = "nginx is not installed (Debian package nginx; .ci/run installs it)"
        if os.environ.get("SYNCSTATUS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and SYNCSTATUS_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    return found


@contextmanager
def running_nginx(backends: list[Server]) -> Iterator[int]:
    binary = _nginx()
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("127.0.0.1:8001", f"127.0.0.1:{backends[0].port}")
    site = site.replace("127.0.0.1:8002", f"127.0.0.1:{backends[1].port}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    with tempfile.TemporaryDirectory(prefix="syncstatus-nginx-") as folder:
        root = Path(folder)
        (root / "site.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            f"{user}worker_processes 1;\nerror_log {root}/error.log warn;\npid {root}/nginx.pid;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n access_log {root}/access.log;\n client_body_temp_path {root}/body;\n"
            f" proxy_temp_path {root}/proxy;\n include {root}/site.conf;\n}}\n"
        )
        process = subprocess.Popen(
            [binary, "-p", folder, "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, (root / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


async def _subscribe(url: str, token: str | None, user_id: str) -> ClientConnection:
    ws = await websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": SUBSCRIBE, "variables": {"ids": [user_id]}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


async def _reconnect(url: str, token: str | None, user_id: str) -> ClientConnection:
    """As the page does: retry with backoff until a backend takes the subscription."""
    delay = 0.1
    for _ in range(30):
        try:
            return await _subscribe(url, token, user_id)
        except (OSError, websockets.WebSocketException):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("never reconnected")


async def _statuses_until(ws: ClientConnection, wanted: str) -> list[str]:
    seen: list[str] = []
    while wanted not in seen:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == "ping":  # the server's keepalive comes in between
            continue
        assert message["type"] == "next", message
        seen.append(message["payload"]["data"]["syncUserUpdated"]["status"])
    return seen


async def test_nginx_fronts_two_backends_and_survives_losing_one() -> None:
    _nginx()
    async with AsyncExitStack() as stack:
        url = stack.enter_context(postgres_database(postgres_admin_url()))
        env = {"SYNCSTATUS_BROADCAST_URL": redis_url()}
        backends = [stack.enter_context(run_server(url, env=env)) for _ in range(2)]
        port = stack.enter_context(running_nginx(backends))
        front = Server(url, port, backends[0].process, backends[0].log_path)
        tenant = new_tenant(front, "nginx")
        (user,) = await add_users(tenant.admin, ["behind.proxy@src.example"])

        # The page's queries, through the proxy, with the request id passed on.
        headers = {"Authorization": f"Bearer {tenant.viewer.token}", "X-Request-ID": "via-nginx"}
        http = await stack.enter_async_context(httpx.AsyncClient(headers=headers, timeout=10))
        response = await http.post(front.graphql_url, json={"query": DASHBOARD})
        assert response.status_code == 200 and "errors" not in response.json(), response.text
        assert response.json()["data"]["syncUsers"]["totalCount"] == 1
        assert response.headers["x-request-id"] == "via-nginx"
        for internal in ("/metrics", "/readyz", "/healthz"):
            assert (await http.get(f"{front.url}{internal}")).status_code == 403, internal

        ws = await _subscribe(front.ws_url, tenant.viewer.token, user["id"])
        run = await start(tenant.worker, user["id"])
        assert await _statuses_until(ws, "IN_PROGRESS")
        holder = next(
            b for b in backends
            if value(scrape(b.url), "syncstatus_websocket_connections") == 1
        )  # fmt: skip
        survivor = next(b for b in backends if b is not holder)
        holder.process.kill()
        holder.process.wait()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)

        ws = await _reconnect(front.ws_url, tenant.viewer.token, user["id"])
        assert value(scrape(survivor.url), "syncstatus_websocket_connections") == 1
        await finish(tenant.worker, run["id"])  # through the proxy, on the survivor
        assert "SYNCED" in await _statuses_until(ws, "SYNCED")
        await ws.close()
        for _ in range(5):  # every request lands on the survivor now
            response = await http.post(front.graphql_url, json={"query": DASHBOARD})
            assert response.status_code == 200 and "errors" not in response.json()
