"""A database outage is retryable: HTTP 503, Retry-After and SERVICE_UNAVAILABLE, never
INTERNAL_SERVER_ERROR with 200; /readyz says so; service resumes by itself afterwards."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.api_tests.conftest import admin_token
from tests.private_postgres import private_postgres
from tests.server import run_server

QUERY = {"query": "query Metrics { syncMetrics { failedSyncs syncsInProgress } }"}
MUTATION = {
    "query": "mutation($users: [SyncUserInput!]!) { addSyncUsers(users: $users) { id } }",
    "variables": {"users": [{"email": "a@src.example", "destinationEmail": "a@dst.example"}]},
}


def _post(url: str, token: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def _websocket_is_told_to_retry(url: str, token: str) -> None:
    async with websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


def test_a_database_outage_is_503_with_retry_after_and_then_heals() -> None:
    with private_postgres() as pg, run_server(pg.url) as server:
        token = admin_token(pg.url, "outage")
        assert _post(server.graphql_url, token, QUERY).json()["data"]["syncMetrics"]
        unchecked = admin_token(pg.url, "outage")  # not in the server's token cache yet
        pg.stop()
        try:
            for body in (QUERY, MUTATION):
                response = _post(server.graphql_url, token, body)
                assert response.status_code == 503, response.text
                assert int(response.headers["retry-after"]) > 0
                errors = response.json()["errors"]
                assert {e["extensions"]["code"] for e in errors} == {"SERVICE_UNAVAILABLE"}
            asyncio.run(_websocket_is_told_to_retry(server.ws_url, unchecked))
            ready = httpx.get(f"{server.url}/readyz", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["failing"][0] == "database"
            assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
        finally:
            pg.start()
        deadline = time.monotonic() + 20
        while True:
            response = _post(server.graphql_url, token, MUTATION)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert "errors" not in response.json()
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        assert "INTERNAL_SERVER_ERROR" not in server.log()
