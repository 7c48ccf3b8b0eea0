"""app.events.messages: the JSON an event travels as between processes, and its stand-in
reference when it would not fit the broker's messages."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import cast

import pytest
from broadcaster import Event

from app.domain.views import PolicyView, RunView, UserView
from app.events.broker import create_broadcast
from app.events.messages import (
    PolicyEvent,
    PolicyRef,
    Publisher,
    UserEvent,
    UserRef,
    UsersRequested,
    channel_for,
    channel_of,
    decode,
    encode,
    tenant_of,
)


def policy(description: str | None = "Mail only") -> PolicyView:
    return PolicyView(
        id=4,
        tenant_id=9,
        name="Sales",
        description=description,
        active=True,
        sync_interval_minutes=60,
        services=("MAIL", "DRIVE"),
        user_count=12,
        revision=3,
        created_at=1_000,
        updated_at=2_000,
    )


def run(state: str = "RUNNING") -> RunView:
    return RunView(
        id=31,
        tenant_id=9,
        user_id=17,
        kind="DELTA",
        service="MAIL",
        state=state,
        started_at=5_000,
        finished_at=None if state == "RUNNING" else 6_000,
        items_total=400,
        items_processed=120,
        items_failed=1,
        changes=80,
        error_code=None,
        error_message=None,
    )


def user() -> UserView:
    return UserView(
        id=17,
        tenant_id=9,
        email="maria@contoso.example",
        destination_email="maria@google.example",
        policy_id=4,
        status="IN_PROGRESS",
        latest_sync_at=5_000,
        due_at=3_605_000,
        sync_requested=False,
        unresolved_failure_count=2,
        version=8,
        current_run_id=31,
        last_finished_run_id=30,
        policy=policy(),
        current_run=run(),
        last_finished_run=run("FAILED"),
    )


def test_a_user_event_round_trips() -> None:
    event = UserEvent("progress", user())
    message = encode(event)
    assert message.isascii()
    assert json.loads(message)["t"] == "user"
    decoded = decode(message)
    assert decoded == event
    assert isinstance(decoded, UserEvent)
    # The snapshots (left out of UserView's equality) travel too: subscribers are served
    # from them without a query.
    assert decoded.user.policy == event.user.policy
    assert decoded.user.current_run == event.user.current_run
    assert decoded.user.last_finished_run == event.user.last_finished_run
    assert tenant_of(event) == 9


def test_a_policy_event_round_trips() -> None:
    event = PolicyEvent(policy("Zürich ✓"))
    message = encode(event)
    assert message.isascii()  # json escapes: the length is the size in bytes
    assert decode(message) == event
    assert tenant_of(event) == 9


def test_a_bulk_request_travels_as_one_small_event() -> None:
    """A transaction's worth of requested users: a range, a window and a count, whatever
    their number (far below PostgreSQL NOTIFY's 8000 bytes)."""
    event = UsersRequested(
        9, 1_000_001, 1_250_000, 1_790_000_000_000_000, 1_790_000_000_000_001, 249_000
    )
    message = encode(event, max_bytes=200)
    assert len(message) < 200
    assert decode(message) == event
    assert tenant_of(event) == 9
    assert channel_of(event) == channel_for(9)


def test_an_event_over_the_limit_becomes_a_reference() -> None:
    big = UserEvent("finished", user())
    size = len(encode(big))
    assert encode(big, max_bytes=size) == encode(big)
    ref = decode(encode(big, max_bytes=size - 1))
    assert ref == UserRef("finished", 9, 17, 8)
    assert tenant_of(ref) == 9
    long_policy = PolicyEvent(policy("x" * 10_000))
    policy_ref = decode(encode(long_policy, max_bytes=7999))
    assert policy_ref == PolicyRef(9, 4)
    assert tenant_of(policy_ref) == 9


def test_only_lifecycle_events_are_never_coalesced() -> None:
    kinds = ("added", "assigned", "requested", "started", "progress", "finished", "policy")
    kept = {kind for kind in kinds if not UserEvent(kind, user()).coalescable}  # type: ignore[arg-type]
    assert kept == {"started", "finished"}


def test_unknown_messages_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown event type 'nope'"):
        decode('{"t":"nope"}')


def test_channels_are_plain_identifiers() -> None:
    assert channel_for(42) == "syncstatus_tenant_42"
    assert channel_for(42).isidentifier()


async def test_published_events_reach_the_tenants_channel() -> None:
    broadcast = create_broadcast("memory://")
    async with broadcast, broadcast.subscribe(channel_for(9)) as subscriber:
        await Publisher(broadcast).publish([UserEvent("progress", user())])
        # broadcaster types Subscriber.__aiter__ as returning `AsyncGenerator | None`.
        received = await anext(aiter(cast(AsyncIterator[Event], subscriber)))
    assert decode(received.message) == UserEvent("progress", user())


async def test_a_broker_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    broadcast = create_broadcast("memory://")  # never connected: publishing fails
    with caplog.at_level(logging.WARNING, logger="app.events.messages"):
        await Publisher(broadcast).publish([PolicyEvent(policy())])
    assert "could not publish PolicyEvent event" in caplog.text
