"""The subscriber mailbox in isolation: latest state per user for a slow reader, start and
finish kept in version order, bounded, and a clear cut-off when even those pile up; a
connection's mailboxes share a byte budget, over which they get the latest state per user."""

from __future__ import annotations

import asyncio

import pytest

from subscriptions.subscriber import (
    MAX_PENDING,
    MAX_PENDING_PER_USER,
    MERGED,
    MIN_ENTRY_BYTES,
    OVERFLOWED,
    QUEUED,
    Backlog,
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
    subscriber = UserSubscriber((1, 2))
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
    assert subscriber.pending == 0  # it must refetch: what waited is freed at once
    with pytest.raises(SubscriberOverflow):
        await next_batch(subscriber)


def test_a_cut_off_subscriber_keeps_nothing_however_many_events_follow() -> None:
    subscriber = UserSubscriber(None)
    subscriber.overflow()
    for user_id in range(1, 3 * MAX_PENDING):
        subscriber.offer(event(user_id, 1, "started"))
    assert subscriber.pending == 0


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


# -- a connection's byte budget ------------------------------------------------------------


def connection(limit: int, subscriptions: int, message_bytes: int) -> list[UserSubscriber]:
    backlog = Backlog(limit)
    mailboxes = [UserSubscriber(None) for _ in range(subscriptions)]
    for mailbox in mailboxes:
        mailbox.join(backlog)
        mailbox.measured(message_bytes)
    return mailboxes


def held(mailboxes: list[UserSubscriber]) -> int:
    return sum(m.pending for m in mailboxes)


def test_over_the_budget_a_connection_gets_the_latest_state_per_user() -> None:
    (mailbox,) = connection(10 * 1000, 1, 1000)
    for version in range(1, 5):  # starts and finishes are kept while under the budget
        mailbox.offer(event(1, version, "started" if version % 2 else "finished"))
    for user_id in range(2, 8):
        mailbox.offer(event(user_id, 1, "started"))
    assert mailbox.pending == 10
    mailbox.offer(event(1, 5, "started"))  # 11 KB: over
    assert mailbox.backlog is not None and mailbox.backlog.coalescing
    assert mailbox.pending == 7  # one state per user: the newest
    assert [(e.user.id, e.user.version) for e in mailbox.take_batch()] == [(1, 5)]
    mailbox.offer(event(2, 2, "finished"))
    mailbox.offer(event(2, 3, "started"))  # merged into the waiting state while coalescing
    assert mailbox.pending == 6
    while mailbox.pending:
        mailbox.take_batch()
    assert not mailbox.backlog.coalescing  # drained below half: starts and finishes again
    mailbox.offer(event(2, 4, "finished"))
    mailbox.offer(event(2, 5, "started"))
    assert mailbox.pending == 2


def test_a_connection_holds_its_budget_at_most_whatever_the_events_and_the_tenant() -> None:
    limit, message = 1024 * 1024, 400
    mailboxes = connection(limit, 19, message)
    backlog = mailboxes[0].backlog
    assert backlog is not None
    peak = 0
    for version in range(1, 4):
        for user_id in range(1, 6_001):  # a 6,000-user tenant, every user three times
            for mailbox in mailboxes:
                mailbox.offer(event(user_id, version, "started"))
            peak = max(peak, backlog.queued)
    assert peak <= limit
    assert held(mailboxes) * max(message, MIN_ENTRY_BYTES) == backlog.queued
    # Not even one user each's latest state fits: a reader this far behind must refetch.
    assert all(m.overflowed for m in mailboxes)
    with pytest.raises(SubscriberOverflow):
        mailboxes[0].take_batch()


def test_a_stuck_page_keeps_the_latest_state_of_its_rows() -> None:
    limit, message = 1024 * 1024, 400
    mailboxes = connection(limit, 20, message)  # 20 subscriptions of 100 users each
    for version in range(1, 20):
        for n, mailbox in enumerate(mailboxes):
            for user_id in range(n * 100, n * 100 + 100):
                mailbox.offer(event(user_id, version, "started" if version % 2 else "finished"))
    assert not any(m.overflowed for m in mailboxes)
    assert held(mailboxes) == 20 * 100  # coalesced: one state per user, the newest
    assert {e.user.version for e in mailboxes[3].take_batch()} == {19}


def test_the_budget_follows_the_size_of_the_messages_sent() -> None:
    (mailbox,) = connection(100_000, 1, 100)
    for user_id in range(1, 101):
        mailbox.offer(event(user_id, 1))
    assert mailbox.backlog is not None
    assert mailbox.backlog.queued == 100 * MIN_ENTRY_BYTES  # small messages count the floor
    mailbox.measured(2000)  # the subscription's messages are bigger than thought: over
    assert mailbox.backlog.queued <= 100_000
    assert mailbox.overflowed


def test_leaving_the_connection_gives_its_share_back() -> None:
    first, second = connection(1_000_000, 2, 1000)
    for user_id in range(1, 11):
        first.offer(event(user_id, 1))
        second.offer(event(user_id, 1))
    backlog = first.backlog
    assert backlog is not None and backlog.queued == 20_000
    first.leave()
    assert backlog.queued == 10_000 and first not in backlog.mailboxes
