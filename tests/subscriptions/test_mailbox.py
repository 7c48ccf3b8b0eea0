"""The subscriber mailbox in isolation: latest state per user for a slow reader, start and
finish kept in version order, bounded, and a clear cut-off when even those pile up."""

from __future__ import annotations

import asyncio

import pytest

from subscriptions.subscriber import (
    MAX_PENDING,
    MAX_PENDING_PER_USER,
    MERGED,
    OVERFLOWED,
    QUEUED,
    SubscriberOverflow,
    UserSubscriber,
)
from tests.subscriptions.factories import next_batch
from tests.subscriptions.factories import user_event as event


async def drain(subscriber: UserSubscriber) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    while subscriber.pending:
        async with asyncio.timeout(1):
            out += [(e.user.id, e.user.version, e.kind) for e in await next_batch(subscriber)]
    return out


async def test_progress_is_coalesced_start_and_finish_are_kept() -> None:
    subscriber = UserSubscriber(None)
    subscriber.offer(event(1, 1, "started"))
    for version in range(2, 50):
        subscriber.offer(event(1, version))
    subscriber.offer(event(1, 50, "finished"))
    subscriber.offer(event(1, 51, "started"))
    subscriber.offer(event(1, 52))
    assert subscriber.pending == 4
    assert await drain(subscriber) == [
        (1, 1, "started"),
        (1, 50, "finished"),
        (1, 51, "started"),
        (1, 52, "progress"),
    ]


async def test_latest_state_per_user_in_arrival_order_of_users() -> None:
    subscriber = UserSubscriber(frozenset({1, 2}))
    for version in range(1, 20):
        subscriber.offer(event(1, version))
        subscriber.offer(event(2, version * 10))
    assert await drain(subscriber) == [(1, 19, "progress"), (2, 190, "progress")]


async def test_stale_and_repeated_versions_are_dropped() -> None:
    subscriber = UserSubscriber(None)
    subscriber.offer(event(1, 5, "started"))
    subscriber.offer(event(1, 4))  # older than what is waiting
    assert await drain(subscriber) == [(1, 5, "started")]
    subscriber.offer(event(1, 5, "policy"))  # already delivered
    subscriber.offer(event(1, 3))
    assert await drain(subscriber) == []


async def test_too_many_lifecycle_events_of_one_user_cut_the_subscriber_off() -> None:
    subscriber = UserSubscriber(None)
    for version in range(1, MAX_PENDING_PER_USER + 2):
        subscriber.offer(event(1, version, "started" if version % 2 else "finished"))
    assert subscriber.pending == MAX_PENDING_PER_USER
    with pytest.raises(SubscriberOverflow):
        await next_batch(subscriber)


async def test_too_many_users_waiting_cut_the_subscriber_off() -> None:
    subscriber = UserSubscriber(None)
    for user_id in range(1, MAX_PENDING + 2):
        subscriber.offer(event(user_id, 1))
    with pytest.raises(SubscriberOverflow):
        await next_batch(subscriber)


async def test_a_waiting_reader_is_woken_and_can_be_cancelled() -> None:
    subscriber = UserSubscriber(None)
    waiting = asyncio.create_task(next_batch(subscriber))
    await asyncio.sleep(0)
    subscriber.offer(event(7, 1, "started"))
    async with asyncio.timeout(1):
        assert [e.user.id for e in await waiting] == [7]
    idle = asyncio.create_task(next_batch(subscriber))
    await asyncio.sleep(0)
    idle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await idle
    subscriber.overflow()
    with pytest.raises(SubscriberOverflow):
        await next_batch(subscriber)


def test_offer_says_what_it_did_for_the_fan_out_counters() -> None:
    subscriber = UserSubscriber(None)
    assert subscriber.offer(event(1, 1, "started")) == QUEUED
    assert subscriber.offer(event(1, 2)) == QUEUED  # progress after a start is kept
    assert subscriber.offer(event(1, 3)) == MERGED  # supersedes the waiting progress
    assert subscriber.offer(event(1, 2)) == MERGED  # a newer state is already waiting
    full = UserSubscriber(None)
    kept = [full.offer(event(1, v, "finished")) for v in range(1, MAX_PENDING_PER_USER + 3)]
    assert kept[:MAX_PENDING_PER_USER] == [QUEUED] * MAX_PENDING_PER_USER
    assert kept[MAX_PENDING_PER_USER:] == [OVERFLOWED, QUEUED]  # counted once, when it happens
