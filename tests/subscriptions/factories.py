"""Events built in memory, and a reader of the hub's mailboxes, for the in-process tests of the
mailbox and the hub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.domain.views import PolicyView, UserView
from app.events.messages import UserEvent, UserEventKind
from subscriptions.hub import Hub
from subscriptions.subscriber import UserIds, UserSubscriber


@asynccontextmanager
async def users(
    hub: Hub, tenant_id: int, user_ids: UserIds | None
) -> AsyncIterator[UserSubscriber]:
    """A subscriber in the hub while the block runs, as a live subscription holds one."""
    feed, subscriber = await hub.add_users(tenant_id, user_ids)
    try:
        yield subscriber
    finally:
        await hub.remove_users(feed, subscriber)


async def next_batch(subscriber: UserSubscriber) -> list[UserEvent]:
    """Waits to be woken by the mailbox's listener, as a live subscription is; then takes one
    user's pending events in version order (raises SubscriberOverflow when cut off)."""
    woken = asyncio.Event()
    subscriber.listener = woken.set
    try:
        while not subscriber.pending and not subscriber.overflowed:
            await woken.wait()
            woken.clear()
    finally:
        subscriber.listener = None
    return subscriber.take_batch()


def user_event(
    user_id: int, version: int, kind: UserEventKind = "progress", tenant_id: int = 1
) -> UserEvent:
    view = UserView(
        id=user_id,
        tenant_id=tenant_id,
        email=f"u{user_id}@x.example",
        destination_email=f"u{user_id}@y.example",
        policy_id=None,
        status="IN_PROGRESS",
        latest_sync_at=None,
        due_at=None,
        sync_requested=False,
        current_run_id=None,
        last_finished_run_id=None,
        unresolved_failure_count=0,
        version=version,
    )
    return UserEvent(kind, view)


def policy_view(policy_id: int, user_count: int, tenant_id: int = 1) -> PolicyView:
    return PolicyView(
        id=policy_id,
        tenant_id=tenant_id,
        name=f"p{policy_id}",
        description=None,
        active=False,
        sync_interval_minutes=60,
        services=("MAIL",),
        user_count=user_count,
        revision=2,
        created_at=0,
        updated_at=0,
    )
