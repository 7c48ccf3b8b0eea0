"""SIGTERM drains: the server stops accepting, finishes requests in flight, closes WebSockets
with 1012 and exits within SYNCSTATUS_SHUTDOWN_TIMEOUT. Under load, no mutation that got a
success response is lost, and none that got an error or no response is half applied."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import websockets

from tests.api_tests.conftest import admin_token
from tests.server import run_server

SHUTDOWN_TIMEOUT = 5
ADD = "mutation($users: [SyncUserInput!]!) { addSyncUsers(users: $users) { id email } }"
LIST = """query($after: String) { syncUsers(first: 100, after: $after) {
  pageInfo { hasNextPage endCursor } edges { node { email } } } }"""
CLIENTS = 8


def _pair(client: int, n: int) -> list[dict[str, str]]:
    return [
        {
            "email": f"c{client}-{n}-{half}@src.example",
            "destinationEmail": f"d{client}-{n}-{half}@dst.example",
        }
        for half in ("a", "b")
    ]


async def _load(url: str, token: str, client: int, stop: asyncio.Event, outcomes: dict) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        n = 0
        while not stop.is_set():
            n += 1
            key = (client, n)
            try:
                response = await http.post(
                    url, json={"query": ADD, "variables": {"users": _pair(client, n)}}
                )
                body = response.json()
                ok = response.status_code == 200 and not body.get("errors")
                outcomes[key] = "ok" if ok else "error"
            except (httpx.HTTPError, ValueError):
                outcomes[key] = "none"
                await asyncio.sleep(0.05)


async def _emails(url: str, token: str) -> set[str]:
    found: set[str] = set()
    after = None
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        while True:
            body = (
                await http.post(url, json={"query": LIST, "variables": {"after": after}})
            ).json()
            assert body.get("data"), body
            page = body["data"]["syncUsers"]
            found |= {edge["node"]["email"] for edge in page["edges"]}
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]


async def test_sigterm_drains_without_losing_acknowledged_mutations(database_url: str) -> None:
    env = {"SYNCSTATUS_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)}
    outcomes: dict[tuple[int, int], str] = {}
    env["SYNCSTATUS_LOG_LEVEL"] = "info"
    with run_server(database_url, env=env) as server:
        token = admin_token(database_url, "drain")  # once the server migrated SQLite
        ws = await websockets.connect(
            server.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        )
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        stop = asyncio.Event()
        load = [
            asyncio.create_task(_load(server.graphql_url, token, c, stop, outcomes))
            for c in range(CLIENTS)
        ]
        deadline = time.monotonic() + 30
        while sum(o == "ok" for o in outcomes.values()) < 20:  # under load
            assert time.monotonic() < deadline, outcomes
            await asyncio.sleep(0.1)
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            await asyncio.wait_for(ws.recv(), SHUTDOWN_TIMEOUT + 5)
            raise AssertionError("the socket should have been closed")
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1012
        exit_code = await asyncio.to_thread(server.process.wait, SHUTDOWN_TIMEOUT + 10)
        took = time.monotonic() - sent
        stop.set()
        await asyncio.gather(*load)
        # uvicorn re-raises the signal it handled once it has shut down gracefully.
        assert exit_code in (0, -signal.SIGTERM), server.log()[-3000:]
        assert took < SHUTDOWN_TIMEOUT + 3, took
        assert "Application shutdown complete" in server.log()

    with run_server(database_url) as again:
        emails = await _emails(again.graphql_url, token)
    acknowledged = [key for key, outcome in outcomes.items() if outcome == "ok"]
    assert acknowledged
    for key, outcome in outcomes.items():
        present = {u["email"] in emails for u in _pair(*key)}
        assert len(present) == 1, f"half applied: {key} ({outcome})"
        if outcome == "ok":
            assert present == {True}, f"acknowledged but lost: {key}"
    print(f"{len(acknowledged)} acknowledged, {len(outcomes) - len(acknowledged)} not, none lost")
