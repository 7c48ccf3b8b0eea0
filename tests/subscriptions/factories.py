"""Events built in memory, for the in-process tests of the mailbox and the hub."""

from __future__ import annotations

from app.domain.views import PolicyView, UserView
from app.events.messages import UserEvent, UserEventKind


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
