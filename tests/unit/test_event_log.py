"""The event log and the replay from it (issue 11): sequences are gap-free per tenant in commit
order, and a feed delivers every logged event once and in order whether the broker carried
it, lost it (a gap, or a lost last event) or carried it twice. SQLite in-process, with the
memory broadcast standing in for a broker that loses messages (the test leaves them out)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, select

from app.events import event_log
from app.events.broker import ReliableBroadcast
from app.events.messages import (
    Event,
    TokenRevoked,
    channel_for,
    decode,
    decode_sequenced,
    encode,
    with_seq,
)
from app.store.engine import Database
from app.store.models import EventLog, Tenant
from app.store.unit_of_work import write
from subscriptions import hub as hub_module
from subscriptions.hub import Hub, TenantFeed
from subscriptions.sequence import SequenceTracker, Verdict
from subscriptions.subscriber import SubscriberOverflow, UserSubscriber
from tests.server import add_tenant, open_sqlite
from tests.subscriptions.factories import next_batch, user_event, users


def test_a_tracker_tells_next_duplicate_and_gap() -> None:
    tracker = SequenceTracker(5)
    assert tracker.check(6) is Verdict.NEXT
    assert tracker.check(5) is Verdict.DUPLICATE
    assert tracker.check(1) is Verdict.DUPLICATE
    assert tracker.check(8) is Verdict.GAP
    assert tracker.advance(6) == 0
    assert tracker.advance(9) == 2  # 7 and 8 never delivered
    assert (tracker.last, tracker.lost) == (9, 2)
    assert tracker.advance(7) == 0 and tracker.last == 9  # never goes back


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with open_sqlite() as database:
        yield database


async def _log(db: Database, events: list[Event]) -> list[int | None]:
    logged = await db.run_write(lambda conn: event_log.append(conn, events, 1_000))
    return [entry[0] if entry else None for entry in logged]


async def test_sequences_are_gap_free_per_tenant_and_rows_hold_the_events(db: Database) -> None:
    one, two = await add_tenant(db, "one"), await add_tenant(db, "two")
    assert await _log(db, [user_event(1, 1, "started", one)]) == [1]
    mixed: list[Event] = [
        user_event(2, 1, "started", two),
        TokenRevoked(one, 7),  # its own channel: not logged
        user_event(1, 2, "finished", one),
        user_event(3, 1, "started", one),
    ]
    assert await _log(db, mixed) == [1, None, 2, 3]
    assert await event_log.last_seq(db, one) == 3
    assert await event_log.last_seq(db, two) == 1
    rows = await event_log.read_after(db, one, 1)
    assert [seq for seq, _ in rows] == [2, 3]
    assert decode(rows[0][1]) == user_event(1, 2, "finished", one)
    # As published: the logged encoding with its sequence.
    assert decode_sequenced(with_seq(rows[0][1], 2)) == (2, user_event(1, 2, "finished", one))
    assert await event_log.read_after(db, one, 1, limit=1) == rows[:1]


async def test_a_failed_change_logs_nothing_and_takes_no_sequence(db: Database) -> None:
    tenant = await add_tenant(db, "acme")
    broadcast = ReliableBroadcast("memory://")

    class Publisher:
        event_log = True
        published: list[tuple[list[Event], object]] = []

        async def publish(self, events: list[Event], seqs: object = None) -> None:
            self.published.append((events, seqs))

    publisher = Publisher()

    def failing(_conn: object, _now: int) -> tuple[None, list[Event]]:
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await write(db, publisher, failing)  # type: ignore[arg-type]
    await write(db, publisher, lambda _c, _n: (None, [user_event(1, 1, "started", tenant)]))  # type: ignore[arg-type]
    started = user_event(1, 1, "started", tenant)
    assert publisher.published == [([started], [(1, encode(started))])]
    assert await event_log.last_seq(db, tenant) == 1
    del broadcast


async def test_prune_deletes_only_what_is_older_than_the_bound(db: Database) -> None:
    tenant = await add_tenant(db, "acme")
    await db.run_write(lambda c: event_log.append(c, [user_event(1, 1, "started", tenant)], 0))
    await db.run_write(
        lambda c: event_log.append(c, [user_event(1, 2, "finished", tenant)], 500_000_000)
    )
    assert await event_log.prune(db, keep_seconds=600, now=700_000_000) == 1
    assert [seq for seq, _ in await event_log.read_after(db, tenant, 0)] == [2]


# -- the feed: replay from the log --------------------------------------------------------------


@pytest.fixture
async def broadcast() -> AsyncIterator[ReliableBroadcast]:
    async with ReliableBroadcast("memory://") as running:
        yield running  # type: ignore[misc]


@pytest.fixture
async def hub(broadcast: ReliableBroadcast, db: Database) -> AsyncIterator[Hub]:
    running = Hub(broadcast, db, replay=True)
    try:
        yield running
    finally:
        await running.close()


async def _committed(db: Database, tenant: int, versions: range) -> list[Event]:
    """Logged start/finish events of user 1 (as committed changes log them), in order."""
    events: list[Event] = [
        user_event(1, v, "started" if v % 2 else "finished", tenant) for v in versions
    ]
    for event in events:
        await _log(db, [event])
    return events


async def _send(broadcast: ReliableBroadcast, tenant: int, seq: int, event: Event) -> None:
    await broadcast.publish(channel_for(tenant), encode(event, seq=seq))


async def _versions_until(subscriber: UserSubscriber, last: int, within: float = 5) -> list[int]:
    seen: list[int] = []
    async with asyncio.timeout(within):
        while last not in seen:
            seen += [e.user.version for e in await next_batch(subscriber)]
    return seen


async def test_a_gap_is_read_from_the_log_and_duplicates_are_dropped(
    hub: Hub, broadcast: ReliableBroadcast, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the feed hands to routing (subscribers' mailboxes would hide a repeated version).
    routed: list[int] = []
    route = TenantFeed._route

    async def counting(feed: TenantFeed, event: Any) -> None:
        routed.append(event.user.version)
        await route(feed, event)

    monkeypatch.setattr(TenantFeed, "_route", counting)
    tenant = await add_tenant(db, "acme")
    async with users(hub, tenant, None) as subscriber:
        events = await _committed(db, tenant, range(1, 5))  # seq n is version n
        await _send(broadcast, tenant, 1, events[0])
        assert await _versions_until(subscriber, 1) == [1]
        # 2 and 3 lost by the broker; 4 arrives: 2, 3 and 4 are read from the log, in order.
        await _send(broadcast, tenant, 4, events[3])
        assert await _versions_until(subscriber, 4) == [2, 3, 4]
        # Late or repeated messages of what was delivered: dropped before the subscribers.
        for seq in (3, 2, 4):
            await _send(broadcast, tenant, seq, events[seq - 1])
        [fifth] = await _committed(db, tenant, range(5, 6))
        await _send(broadcast, tenant, 5, fifth)
        assert await _versions_until(subscriber, 5) == [5]
        stats = hub.stats()
        assert routed == [1, 2, 3, 4, 5]
        # Duplicates: 4 itself (read with the gap) and the three late ones.
        replayed, duplicates = stats["events_replayed"], stats["events_duplicate"]
        assert (replayed, duplicates, stats["events_lost"]) == (3, 4, 0)


async def test_a_lost_last_event_is_found_when_the_feed_is_idle(
    hub: Hub, broadcast: ReliableBroadcast, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "IDLE_POLL", 0.3)
    tenant = await add_tenant(db, "acme")
    async with users(hub, tenant, None) as subscriber:
        await _committed(db, tenant, range(1, 3))  # neither ever published
        assert await _versions_until(subscriber, 2, within=3) == [1, 2]


async def test_events_gone_from_the_log_cut_subscribers_off(
    hub: Hub, broadcast: ReliableBroadcast, db: Database
) -> None:
    tenant = await add_tenant(db, "acme")
    async with users(hub, tenant, None) as subscriber:
        events = await _committed(db, tenant, range(1, 4))
        await db.run_write(
            lambda c: c.execute(delete(EventLog).where(EventLog.seq < 3)).rowcount
        )  # pruned before this process read them
        await _send(broadcast, tenant, 3, events[2])
        with pytest.raises(SubscriberOverflow):
            await _versions_until(subscriber, 3)
        assert hub.stats()["events_lost"] == 2


async def test_a_feed_starts_after_what_is_logged_already(
    hub: Hub, broadcast: ReliableBroadcast, db: Database
) -> None:
    tenant = await add_tenant(db, "acme")
    await _committed(db, tenant, range(1, 3))  # before anyone subscribed: not replayed
    async with users(hub, tenant, None) as subscriber:
        [event] = await _committed(db, tenant, range(3, 4))
        await _send(broadcast, tenant, 3, event)
        assert await _versions_until(subscriber, 3) == [3]
    async with db.read() as session:
        assert await session.scalar(select(Tenant.event_seq).where(Tenant.id == tenant)) == 3


async def test_a_reference_is_delivered_as_it_was_logged_not_as_the_user_is_now(
    hub: Hub, broadcast: ReliableBroadcast, db: Database
) -> None:
    """An event too big for the broker travels as a reference; the feed reads the logged
    event whole. Loading the user's current state instead lost the start whenever the finish
    had committed before the reference was read (the start arrived as the finished user)."""
    tenant = await add_tenant(db, "acme")
    async with users(hub, tenant, None) as subscriber:
        started, finished = await _committed(db, tenant, range(1, 3))
        for seq, event in ((1, started), (2, finished)):
            reference = encode(event, max_bytes=10, seq=seq)
            assert decode_sequenced(reference)[1] != event  # sent as a reference
            await broadcast.publish(channel_for(tenant), reference)
        seen: list[tuple[int, str]] = []
        async with asyncio.timeout(5):
            while len(seen) < 2:
                seen += [(e.user.version, e.kind) for e in await next_batch(subscriber)]
    assert seen == [(1, "started"), (2, "finished")]
