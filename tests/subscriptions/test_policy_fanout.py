"""A policy change is one event; each process loads the watched users of that policy in one
pass of chunked queries: tens of thousands of watched ids must not exceed SQLite's limit on
bound variables (32766), and only the policy's users come back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from app.demo.seed import seed
from app.domain.views import PolicyView
from app.store.engine import Database
from app.store.models import Policy, SyncUser
from subscriptions.policy_changes import users_of_policy
from tests.server import open_sqlite


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with open_sqlite() as database:
        yield database


async def test_watched_users_of_a_policy_with_40000_watched_ids(db: Database) -> None:
    tenant_id = await seed(db, "Fanout", 300)
    async with db.read() as session:
        policy = (
            await session.scalars(select(Policy).where(Policy.tenant_id == tenant_id).limit(1))
        ).one()
        members = set(
            await session.scalars(select(SyncUser.id).where(SyncUser.policy_id == policy.id))
        )
    view = PolicyView.of(policy)
    assert members, "the seed assigns users to every policy"
    watched = set(range(1, 40_001))  # far more ids than SQLite binds in one statement

    found = [u async for chunk in users_of_policy(db, view, watched) for u in chunk]
    assert {u.user.id for u in found} == members
    assert all(u.kind == "policy" and u.user.policy == view for u in found)

    everyone = [u async for chunk in users_of_policy(db, view, None) for u in chunk]
    assert sorted(u.user.id for u in everyone) == sorted(members)
