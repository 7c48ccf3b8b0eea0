"""One engine serves every valid subscription, whatever its shape: the transport takes them all
without a task each, and Strawberry's own pipeline (schema.subscribe(), as run for what the
transport leaves to it) streams through the same LiveOperation, not a loop of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import pytest

from app.auth.tokens import Principal
from app.domain.ids import encode_id
from app.events.broker import ReliableBroadcast
from app.events.messages import channel_for, encode
from app.web.context import Context
from schema.schema import build_schema
from subscriptions import live
from subscriptions.hub import Hub
from tests.conftest import Tenant
from tests.server import Server
from tests.subscriptions.factories import user_event
from tests.subscriptions.support import (
    add_users,
    eventually,
    health,
    raw_socket,
    receive,
    send,
    subscribe,
)

TENANT = 1
SOCKETS = 10
USER = encode_id("SyncUser", 1)
# (document, variables, operation name): aliases, fragments, variables, directives, a named
# operation among others; every one a valid subscription to syncUserUpdated.
SHAPES: dict[str, tuple[str, dict[str, Any] | None, str | None]] = {
    "plain": ("subscription { syncUserUpdated { id version } }", None, None),
    "alias": ("subscription { mine: syncUserUpdated { key: id version } }", None, None),
    "fragments": (
        """subscription Watch($ids: [ID!]) { ...Root }
        fragment Root on Subscription { syncUserUpdated(userIds: $ids) { ...User } }
        fragment User on SyncUser { id version }""",
        {"ids": [USER]},
        None,
    ),
    "variables and directives": (
        """subscription S($ids: [ID!], $all: Boolean!) {
          syncUserUpdated(userIds: $ids) { id version email @include(if: $all) } }""",
        {"ids": [USER], "all": False},
        None,
    ),
    "named among others": (
        "query Q { __typename } subscription S { syncUserUpdated { id version } }",
        None,
        "S",
    ),
}


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with ReliableBroadcast("memory://") as broadcast:
        running = Hub(broadcast, db=None)  # type: ignore[arg-type]  # user events need no DB
        try:
            yield running
        finally:
            await running.close()


async def test_strawberrys_pipeline_streams_through_the_live_engine(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[live.LiveOperation] = []
    all_open = asyncio.Event()
    open_live = live.LiveOperation.open

    async def counted(*args: Any) -> live.LiveOperation:
        operation = await open_live(*args)
        opened.append(operation)
        if len(opened) == len(SHAPES):
            all_open.set()
        return operation

    monkeypatch.setattr(live.LiveOperation, "open", counted)
    schema = build_schema()
    services = SimpleNamespace(hub=hub, rate_limiter=None, telemetry=None)
    context = Context(services, None, websocket=True, principal_=Principal(TENANT, "VIEWER"))  # type: ignore[arg-type]
    streams = [
        await schema.subscribe(query, variables, context, operation_name=name)
        for query, variables, name in SHAPES.values()
    ]
    firsts = [asyncio.ensure_future(anext(stream)) for stream in streams]
    async with asyncio.timeout(5):
        await all_open.wait()
    # Every subscriber in the hub is a LiveOperation's: no stream of Strawberry's own.
    assert len(opened) == hub.stats()["user_subscribers"] == len(SHAPES)
    await hub.broadcast.publish(channel_for(TENANT), encode(user_event(1, 1, "started")))
    async with asyncio.timeout(5):
        results = await asyncio.gather(*firsts)
    for result in results:
        assert not result.errors, result.errors
    assert [result.data for result in results] == [
        {"syncUserUpdated": {"id": USER, "version": 1}},
        {"mine": {"key": USER, "version": 1}},
        {"syncUserUpdated": {"id": USER, "version": 1}},
        {"syncUserUpdated": {"id": USER, "version": 1}},
        {"syncUserUpdated": {"id": USER, "version": 1}},
    ]
    for stream in streams:
        await stream.aclose()
    assert hub.stats()["user_subscribers"] == 0  # closing the stream left the hub


async def test_every_shape_over_the_socket_holds_no_task_of_its_own(
    server: Server, tenant: Tenant
) -> None:
    """Over graphql-transport-ws the transport serves them all: one task per socket at most."""
    _, ids = await add_users(tenant, 1)
    before = health(server)["process"]["tasks"]
    async with AsyncExitStack() as stack:
        for _ in range(SOCKETS):
            ws = await stack.enter_async_context(raw_socket(server, tenant.viewer.token))
            for n, (query, variables, name) in enumerate(SHAPES.values()):
                if variables and "ids" in variables:
                    variables = {**variables, "ids": ids}
                payload = {"query": query, "variables": variables, "operationName": name}
                await send(ws, {"id": str(n), "type": "subscribe", "payload": payload})
            await subscribe(ws, "m", "subscription { figures: syncMetricsUpdated { totalUsers } }")
            assert (await receive(ws))["id"] == "m"
        stats = health(server)
        assert stats["subscriptions"]["user_subscribers"] == SOCKETS * len(SHAPES)
        assert stats["subscriptions"]["metrics_subscribers"] == SOCKETS
        # Each socket's ASGI task, plus the tenant's feed tasks; none per subscription.
        assert stats["process"]["tasks"] - before <= SOCKETS + 5, stats["process"]
    await eventually(lambda: health(server)["subscriptions"].get("user_subscribers", 0) == 0)
