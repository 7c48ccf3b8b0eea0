"""Two API processes on one PostgreSQL database: a token revoked through one is refused by
both, and its open WebSockets on both close with 4403 within 2 s; through the Redis broker
alone (the database poll off), and through the database poll alone (no shared broker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.api import Api
from tests.conftest import Tenant
from tests.server import Server
from tests.services import redis_url
from tests.subscriptions.multi import api_on, postgres_servers
from tests.subscriptions.support import close_code, raw_socket, receive, subscribe

CREATE = """mutation { createApiToken(name: "doomed", role: VIEWER) { id token } }"""
REVOKE = "mutation($id: ID!) { revokeApiToken(id: $id) { revokedAt } }"
METRICS = "{ syncMetrics { totalUsers } }"
METRICS_UPDATES = "subscription { syncMetricsUpdated { totalUsers } }"


@pytest.fixture(scope="module", params=["redis-broker-only", "database-poll-only"])
def servers(request: pytest.FixtureRequest) -> Iterator[list[Server]]:
    if request.param == "redis-broker-only":
        poll_off = {"SYNCSTATUS_REVOCATION_POLL_SECONDS": "0"}
        with postgres_servers(2, redis_url(), env=poll_off) as running:
            yield running
    else:
        with postgres_servers(2, "memory://") as running:  # each process its own broadcast
            yield running


@pytest.mark.parametrize("through", [0, 1])
async def test_a_revoked_token_is_refused_and_closed_on_every_process(
    servers: list[Server], through: int
) -> None:
    tenant = Tenant(servers[through], f"xrev-{through}-{time.monotonic_ns()}")
    admin = api_on(servers[through], tenant, "admin")
    created = (await admin.execute(CREATE))["createApiToken"]
    callers = [Api(s.graphql_url, s.ws_url, created["token"]) for s in servers]
    for api in callers:  # cached by both processes now
        assert (await api.execute(METRICS))["syncMetrics"]["totalUsers"] == 0
    async with (
        raw_socket(servers[0], created["token"]) as first,
        raw_socket(servers[1], created["token"]) as second,
    ):
        for ws in (first, second):
            await subscribe(ws, "1", METRICS_UPDATES)
            assert (await receive(ws))["type"] == "next"
        await admin.execute(REVOKE, id=created["id"])
        revoked_at = time.monotonic()
        assert await callers[through].error_code(METRICS) == "UNAUTHENTICATED"  # at once
        codes = await asyncio.gather(close_code(first, within=2), close_code(second, within=2))
        assert codes == [4403, 4403]
        assert time.monotonic() - revoked_at <= 2
    for api in callers:
        assert await api.error_code(METRICS) == "UNAUTHENTICATED"
    assert (await admin.execute(METRICS))["syncMetrics"]["totalUsers"] == 0  # others unaffected
