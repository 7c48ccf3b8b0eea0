"""Builds the full user state an event carries from ORM rows already in the session (user
administration; the run lifecycle builds it from its own Core rows, see app.lifecycle.sql)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.views import NESTED, PolicyView, RunView, UserView
from app.store.models import Policy, SyncRun, SyncUser


async def user_snapshot(
    session: AsyncSession, user: SyncUser, current: SyncRun | None = None
) -> UserView:
    """The user's committed-to-be state with policy and runs (identity-map lookups first)."""
    policy = await session.get(Policy, user.policy_id) if user.policy_id else None
    if current is None and user.current_run_id:
        current = await session.get(SyncRun, user.current_run_id)
    last = (
        await session.get(SyncRun, user.last_finished_run_id) if user.last_finished_run_id else None
    )
    view = UserView.of(user)
    return UserView(
        **{name: getattr(view, name) for name in view.__slots__ if name not in NESTED},
        policy=PolicyView.of(policy) if policy else None,
        current_run=RunView.of(current) if current else None,
        last_finished_run=RunView.of(last) if last else None,
    )
