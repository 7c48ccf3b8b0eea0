"""GET /metrics: Prometheus text with the service's figures, label values from fixed sets."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.api_tests.conftest import ApiTenant
from tests.api_tests.helpers import METRICS, add_users, finish, start
from tests.ops.metrics_scrape import scrape, value
from tests.server import Server

SUBSCRIBE = "subscription Watch($ids: [ID!]!) { syncUserUpdated(userIds: $ids) { id status } }"
ALLOWED_LABELS = {
    "operation_type": {"query", "mutation", "subscription", "unknown"},
    "kind": {"users", "metrics"},
    "reason": {"broker_queue", "subscriber_overflow", "slow_reader"},
    "method": {"GET", "POST", "HEAD", "OPTIONS", "WS", "OTHER"},
}


async def _subscribe(server: Server, token: str, user_id: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        server.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": SUBSCRIBE, "variables": {"ids": [user_id]}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


async def _wait_for(server: Server, name: str, want: float, **labels: str) -> None:
    for _ in range(100):
        if value(scrape(server.url), name, **labels) == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}{labels} never became {want}")


async def test_metrics_count_operations_events_subscriptions_and_requests(
    server: Server, tenant: ApiTenant
) -> None:
    (user,) = await add_users(tenant.admin, ["metric.user@src.example"])
    before = scrape(server.url)
    subscribed = value(before, "syncstatus_subscriptions", kind="users")
    for _ in range(3):
        await tenant.viewer.execute(METRICS)
    ws = await _subscribe(server, tenant.viewer.token or "", user["id"])
    try:
        await _wait_for(server, "syncstatus_subscriptions", subscribed + 1, kind="users")
        run = await start(tenant.worker, user["id"])
        await finish(tenant.worker, run["id"])
        statuses = []
        while "SYNCED" not in statuses:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] != "next":  # the server's keepalive pings come in between
                continue
            statuses.append(message["payload"]["data"]["syncUserUpdated"]["status"])
    finally:
        await ws.close()
    await _wait_for(server, "syncstatus_subscriptions", subscribed, kind="users")
    after = scrape(server.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ops = "syncstatus_graphql_operations_total"
    assert grew(ops, operation_type="query", outcome="ok") >= 3
    assert grew(ops, operation_type="mutation", outcome="ok") >= 2
    assert grew(ops, operation_type="subscription", outcome="ok") >= 1
    histogram = "syncstatus_graphql_operation_duration_seconds_count"
    assert grew(histogram, operation_type="query") >= 3
    assert grew("syncstatus_events_published_total") >= 2
    assert grew("syncstatus_events_delivered_total") >= len(statuses)
    requests = "syncstatus_http_requests_total"
    assert grew(requests, route="/graphql", method="POST", status="200") >= 5
    assert grew(requests, route="/metrics", method="GET", status="200") >= 1
    assert grew("syncstatus_http_request_duration_seconds_count", route="/graphql") >= 5
    assert value(after, "process_resident_memory_bytes") > 0
    if server.database_url.startswith("sqlite"):
        assert grew("syncstatus_sqlite_writer_queue_wait_seconds_count") >= 2
    else:  # no writer thread on PostgreSQL: no metric that never moves
        assert not [name for name, _ in after if name.startswith("syncstatus_sqlite_writer")]


async def test_errors_count_by_code_and_labels_stay_bounded(
    server: Server, tenant: ApiTenant
) -> None:
    before = scrape(server.url)
    await tenant.viewer.errors("query Secret_Name_42 { nope }")
    await tenant.api("viewer").errors(
        'mutation { addSyncUsers(users: [{email: "x@y.example", destinationEmail: "z"}]) { id } }'
    )
    after = scrape(server.url)
    ops = "syncstatus_graphql_operations_total"
    assert value(after, ops, operation_type="unknown", outcome="BAD_USER_INPUT") + value(
        after, ops, operation_type="query", outcome="BAD_USER_INPUT"
    ) > value(before, ops, operation_type="unknown", outcome="BAD_USER_INPUT") + value(
        before, ops, operation_type="query", outcome="BAD_USER_INPUT"
    )
    assert value(after, ops, operation_type="mutation", outcome="FORBIDDEN") > value(
        before, ops, operation_type="mutation", outcome="FORBIDDEN"
    )
    codes = {"ok", "OTHER"} | {
        "BAD_USER_INPUT", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "CONFLICT",
        "QUERY_TOO_COMPLEX", "RATE_LIMITED", "SERVICE_UNAVAILABLE", "INTERNAL_SERVER_ERROR",
    }  # fmt: skip
    for (name, labels), _ in after.items():
        if not name.startswith("syncstatus_"):
            continue
        for label, label_value in labels:
            assert "Secret_Name" not in label_value and "@" not in label_value
            if label == "outcome":
                assert label_value in codes
            elif label in ALLOWED_LABELS:
                assert label_value in ALLOWED_LABELS[label], (name, label, label_value)
            elif label == "route":
                assert label_value.startswith("/") or label_value == "unmatched"


async def test_client_close_codes_do_not_become_label_values(server: Server) -> None:
    """A client picks the code it closes with: codes outside the protocol's and the server's
    own are counted as "other", so 2,000 of them cannot make 2,000 series. A handshake the
    server refuses counts as HTTP 403 (it was counted as a 1000 close)."""
    requests = "syncstatus_http_requests_total"
    before = scrape(server.url)
    for code in (4100, 4101, 4999):
        ws = await websockets.connect(
            server.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        )
        await ws.close(code=code)
    with pytest.raises(websockets.InvalidStatus):  # an origin the service does not allow
        await websockets.connect(
            server.ws_url,
            subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
            origin=websockets.Origin("https://evil.example"),
        )
    labels = {"route": "/graphql", "method": "WS"}

    def counted(status: str) -> float:
        return value(scrape(server.url), requests, **labels, status=status) - value(
            before, requests, **labels, status=status
        )

    for _ in range(100):  # the server counts a socket once it has closed its side
        if counted("other") >= 3 and counted("403") >= 1:
            break
        await asyncio.sleep(0.05)
    assert counted("other") == 3 and counted("403") == 1
    statuses = {
        dict(labels_)["status"] for (name, labels_) in scrape(server.url) if name == requests
    }
    assert not statuses & {"4100", "4101", "4999"}, statuses
