"""The hub in one process on the memory broadcast: joining while the last subscriber leaves,
progress coalescing before fan-out, lost events and oversized policy changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from broadcaster import Broadcast

from app.events.broker import ReliableBroadcast
from app.events.messages import PolicyEvent, UsersRequested, channel_for, encode
from app.ops.outage import is_outage
from subscriptions.hub import PROGRESS_INTERVAL, REQUESTED_STATES_MAX, SMALL_WATCHERS, Hub
from subscriptions.subscriber import MAX_PENDING, SubscriberOverflow, UserSubscriber
from tests.subscriptions.factories import next_batch, policy_view, user_event, users

TENANT = 1


@pytest.fixture
async def broadcast() -> AsyncIterator[ReliableBroadcast]:
    async with ReliableBroadcast("memory://") as running:
        yield running  # type: ignore[misc]


@pytest.fixture
async def hub(broadcast: ReliableBroadcast) -> AsyncIterator[Hub]:
    running = Hub(broadcast, db=None)  # type: ignore[arg-type]  # these paths need no DB
    try:
        yield running
    finally:
        await running.close()


async def publish(broadcast: Broadcast, *events: object) -> None:
    for event in events:
        await broadcast.publish(channel_for(TENANT), encode(event))  # type: ignore[arg-type]


async def next_versions(subscriber: UserSubscriber) -> list[int]:
    async with asyncio.timeout(2):
        return [e.user.version for e in await next_batch(subscriber)]


async def test_joining_while_the_last_subscriber_leaves(
    hub: Hub, broadcast: ReliableBroadcast
) -> None:
    """The feed of the tenant must not close under a subscriber that is joining it."""
    for _ in range(20):
        leaving = users(hub, TENANT, (1,))
        await leaving.__aenter__()
        joining = users(hub, TENANT, (1,))
        entered = asyncio.create_task(joining.__aenter__())
        await asyncio.sleep(0)  # the joiner found the feed and waits for it to be ready
        await leaving.__aexit__(None, None, None)
        subscriber = await entered
        await publish(broadcast, user_event(1, 1, "started"))
        assert await next_versions(subscriber) == [1]
        await joining.__aexit__(None, None, None)
    assert hub.stats()["tenants"] == 0


async def test_progress_of_one_user_is_paced_start_and_finish_pass_at_once(
    hub: Hub, broadcast: ReliableBroadcast
) -> None:
    async with users(hub, TENANT, (1,)) as subscriber:
        started = time.monotonic()
        await publish(broadcast, user_event(1, 1, "started"))
        await publish(broadcast, *(user_event(1, v) for v in range(2, 30)))
        seen: list[int] = []
        while 29 not in seen:
            seen += await next_versions(subscriber)
        # The start, the first progress, then (held for the interval) only the latest.
        assert seen == [1, 2, 29]
        assert time.monotonic() - started >= PROGRESS_INTERVAL * 0.9
        await publish(broadcast, user_event(1, 30), user_event(1, 31, "finished"))
        assert await next_versions(subscriber) == [31]  # the finish supersedes held progress


async def test_events_lost_in_the_broadcast_layer_cut_subscribers_off() -> None:
    async with ReliableBroadcast("memory://", subscriber_queue_limit=2) as broadcast:
        hub = Hub(broadcast, db=None)  # type: ignore[arg-type]
        try:
            async with users(hub, TENANT, None) as subscriber:
                # Published without yielding: the feed's queue (2) overflows before it reads.
                await publish(broadcast, *(user_event(u, 1, "started") for u in range(1, 10)))
                with pytest.raises(SubscriberOverflow):
                    async with asyncio.timeout(2):
                        while True:
                            await next_batch(subscriber)
        finally:
            await hub.close()


async def test_a_policy_change_bigger_than_a_mailbox_cuts_off_whole_tenant_subscribers(
    hub: Hub, broadcast: ReliableBroadcast
) -> None:
    async with users(hub, TENANT, None) as everything:
        await publish(broadcast, PolicyEvent(policy_view(5, user_count=MAX_PENDING + 1)))
        with pytest.raises(SubscriberOverflow):
            async with asyncio.timeout(2):
                await next_batch(everything)


async def test_a_big_bulk_request_cuts_off_whole_tenant_subscribers_only(
    hub: Hub, broadcast: ReliableBroadcast
) -> None:
    """Too many requested users for every process to load: whole-tenant subscribers refetch;
    a subscriber watching none of the range is left alone (and nothing is loaded for it)."""
    big = UsersRequested(TENANT, 1, 10_000, 5, 5, REQUESTED_STATES_MAX + 1)
    async with (
        users(hub, TENANT, None) as everything,
        users(hub, TENANT, (20_000,)) as one,
    ):
        await publish(broadcast, big, user_event(20_000, 1, "started"))
        with pytest.raises(SubscriberOverflow):
            async with asyncio.timeout(2):
                await next_batch(everything)
        assert await next_versions(one) == [1]


async def test_every_watcher_of_a_user_gets_its_events_as_they_come_and_go(
    hub: Hub, broadcast: ReliableBroadcast
) -> None:
    """Watchers of one user are kept in a tuple while few, in a set beyond SMALL_WATCHERS:
    through both, and as they leave, each present watcher gets each event once and a
    departed one none; the last to leave removes the user from the feed."""
    watching: list[tuple[Any, UserSubscriber]] = []
    version = 0

    async def event_reaches_exactly_the_present() -> None:
        nonlocal version
        version += 1
        await publish(broadcast, user_event(7, version, "started"))
        for _, subscriber in watching:
            assert await next_versions(subscriber) == [version]
        for subscriber in departed:
            assert not subscriber.pending

    departed: list[UserSubscriber] = []
    for count in (1, SMALL_WATCHERS, SMALL_WATCHERS + 3):
        while len(watching) < count:
            block = users(hub, TENANT, (7,))
            watching.append((block, await block.__aenter__()))
        await event_reaches_exactly_the_present()
    while watching:
        block, subscriber = watching.pop(0)
        await block.__aexit__(None, None, None)
        departed.append(subscriber)
        if watching:
            await event_reaches_exactly_the_present()
    assert all(7 not in feed.by_user for feed in hub._feeds.values())


class RefusingBroadcast:
    """A broker that cannot be reached: subscribing fails as a refused connection does."""

    def subscribe(self, channel: str) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")


async def test_a_feed_that_cannot_start_reads_as_an_outage() -> None:
    """The error a subscriber gets names the feed and is chained to the cause, so that the
    transport tells the client to retry (1013) instead of dropping the socket."""
    hub = Hub(RefusingBroadcast(), db=None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="did not start") as raised:
        await hub.add_users(7, None)
    assert is_outage(raised.value)
