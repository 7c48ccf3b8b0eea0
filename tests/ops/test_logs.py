"""Log lines: a timestamp and a level on every line, one JSON object per line with
SYNCSTATUS_LOG_FORMAT=json, one line per HTTP request and per WebSocket connection with its
request id, operation, tenant and outcome; never a token."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from graphql import GraphQLError

from app.ops.request_log import RequestRecord, clean_operation_name, serving
from schema.errors import classify
from tests.api_tests.conftest import ApiTenant, new_tenant
from tests.server import Server, run_server

METRICS = "query DashboardMetrics { syncMetrics { failedSyncs } }"
LONG_NAME = "Q" + "x" * 150


@pytest.fixture(scope="module")
def json_server(database_url: str) -> Iterator[Server]:
    env = {"SYNCSTATUS_LOG_FORMAT": "json", "SYNCSTATUS_LOG_LEVEL": "info"}
    with run_server(database_url, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def logged_tenant(json_server: Server) -> ApiTenant:
    return new_tenant(json_server, "logs")


def _lines(server: Server) -> list[dict[str, Any]]:
    """The log's complete lines, parsed: the server may be writing the last one as we read
    (a CI run read half a line)."""
    text = server.log()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _line_of(server: Server, request_id: str, within: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = [
            line
            for line in _lines(server)
            if line.get("request_id") == request_id and line["logger"] == "syncstatus.access"
        ]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, f"no log line for {request_id}"
        time.sleep(0.1)


def _post(server: Server, token: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **headers}
    return httpx.post(server.graphql_url, json=body, headers=headers, timeout=30)


def test_every_line_is_json_with_a_timestamp_and_a_level(json_server: Server) -> None:
    httpx.get(f"{json_server.url}/livez", timeout=5)
    lines = _lines(json_server)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own too
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line
        assert line["level"] in ("debug", "info", "warning", "error", "critical"), line
        assert isinstance(line["message"], str)


def test_a_request_line_has_its_id_operation_tenant_and_outcome(
    json_server: Server, logged_tenant: ApiTenant
) -> None:
    viewer = logged_tenant.viewer
    response = _post(
        json_server, viewer.token or "", {"query": METRICS}, **{"X-Request-ID": "r-1.a_B"}
    )
    assert response.status_code == 200 and "errors" not in response.json()
    assert response.headers["x-request-id"] == "r-1.a_B"
    line = _line_of(json_server, "r-1.a_B")
    assert line["message"] == "request"
    assert line["method"] == "POST" and line["path"] == "/graphql" and line["status"] == 200
    assert line["operation_name"] == "DashboardMetrics" and line["operation_type"] == "query"
    assert line["outcome"] == "ok" and isinstance(line["tenant"], int)
    assert 0 < line["duration_ms"] < 30_000


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "ünï", "a/b", ""])
def test_a_malformed_request_id_is_replaced(json_server: Server, bad: str) -> None:
    response = httpx.get(
        f"{json_server.url}/livez", headers={b"X-Request-ID": bad.encode()}, timeout=5
    )
    given = response.headers["x-request-id"]
    assert given != bad and re.fullmatch(r"[0-9a-f]{32}", given)
    assert _line_of(json_server, given)["path"] == "/livez"


def test_the_outcome_is_the_error_code_and_client_names_are_cleaned(json_server: Server) -> None:
    body = {"query": f"query {LONG_NAME} {{ syncMetrics {{ failedSyncs }} }}"}
    response = _post(json_server, "sst_not_a_token", body, **{"X-Request-ID": "unauth-1"})
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    line = _line_of(json_server, "unauth-1")
    assert line["outcome"] == "UNAUTHENTICATED" and line["tenant"] is None
    assert line["operation_name"] == LONG_NAME[:64]

    forged = {"query": METRICS, "operationName": 'evil\n{"level":"error"} <b>'}
    response = _post(json_server, "sst_not_a_token", forged, **{"X-Request-ID": "forged-1"})
    assert response.status_code == 400
    line = _line_of(json_server, "forged-1")
    assert line["outcome"] == "BAD_USER_INPUT" and line["operation_name"] is None


def test_an_export_line_has_its_tenant_and_outcome_and_no_search_term(
    json_server: Server, logged_tenant: ApiTenant
) -> None:
    """The CSV export logged tenant and outcome null, and its filter with the search term
    (part of someone's email) in a second line."""
    headers = {"Authorization": f"Bearer {logged_tenant.viewer.token}"}
    url = f"{json_server.url}/export/sync-users.csv"
    found = httpx.get(
        url,
        params={"emailContains": "zebra-term-42", "status": "FAILED"},
        headers={**headers, "X-Request-ID": "export-ok"},
        timeout=30,
    )
    assert found.status_code == 200, found.text
    line = _line_of(json_server, "export-ok")
    assert line["outcome"] == "ok" and isinstance(line["tenant"], int), line
    refused = httpx.get(
        url, params={"status": "BROKEN"}, headers={**headers, "X-Request-ID": "export-bad"}
    )
    assert refused.status_code == 400
    line = _line_of(json_server, "export-bad")
    assert line["outcome"] == "BAD_USER_INPUT" and isinstance(line["tenant"], int), line
    assert "zebra-term-42" not in json_server.log()


def test_operation_names_are_cleaned_for_the_log() -> None:
    assert clean_operation_name('evil\n{"level":"error"} <b>') == "evil___level___error____b_"
    assert clean_operation_name("x" * 500) == "x" * 64
    assert clean_operation_name("") is None


async def test_a_websocket_connection_logs_one_line_when_it_closes(
    json_server: Server, logged_tenant: ApiTenant
) -> None:
    token = logged_tenant.viewer.token
    async with websockets.connect(
        json_server.ws_url,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        additional_headers={"X-Request-ID": "ws-1"},
    ) as ws:
        assert ws.response is not None and ws.response.headers["x-request-id"] == "ws-1"
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription Live { syncMetricsUpdated { failedSyncs } }"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        assert json.loads(await ws.recv())["type"] == "next"
    line = _line_of(json_server, "ws-1")
    assert line["message"] == "websocket closed" and line["method"] == "WS"
    assert line["operation_type"] == "subscription" and line["operation_name"] == "Live"
    assert line["outcome"] == "ok" and isinstance(line["tenant"], int)
    assert line["operations"] == 1 and line["status"] in (1000, 1005)


def test_an_unexpected_error_carries_the_request_id() -> None:
    record = RequestRecord("quote-me", "POST", "/graphql")
    error = GraphQLError("boom", path=["syncMetrics"], original_error=ZeroDivisionError())
    with serving(record):
        classified = classify(error)
    assert classified.extensions == {"code": "INTERNAL_SERVER_ERROR", "requestId": "quote-me"}
    assert classified.message == "Unexpected error."


def test_a_lost_connection_is_service_unavailable_not_internal() -> None:
    error = GraphQLError("x", path=["syncMetrics"], original_error=ConnectionRefusedError())
    assert classify(error).extensions == {"code": "SERVICE_UNAVAILABLE"}


async def test_a_token_in_a_websocket_url_is_not_logged(json_server: Server) -> None:
    """Our request log drops query strings; uvicorn's own WebSocket lines ("WebSocket
    /graphql?access_token=... [accepted]", at INFO) kept them."""
    async with websockets.connect(
        json_server.ws_url + "?access_token=sst_in_a_websocket_url",
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        additional_headers={"X-Request-ID": "ws-url"},
    ):
        pass
    _line_of(json_server, "ws-url")
    with pytest.raises(websockets.InvalidStatus):  # refused at the handshake: another line
        async with websockets.connect(
            json_server.url.replace("http", "ws") + "/nowhere?access_token=sst_in_a_refused_url"
        ):
            pass
    await asyncio.sleep(0.5)
    assert "sst_in_a" not in json_server.log()


def test_tokens_never_appear_in_the_log(json_server: Server, logged_tenant: ApiTenant) -> None:
    # Last in the module: every token the module used, good or bad, is looked for.
    text = json_server.log()
    assert "request" in text
    for token in [api.token for api in logged_tenant._apis.values()] + ["sst_not_a_token"]:
        assert token and token not in text
