"""A policy change alters the public state of all its users: one query per event and process
finds the watched ones, instead of one event per user at the source."""

from __future__ import annotations

from dataclasses import replace

from app.db.engine import Database
from app.events import UserEvent
from app.reads.runs import runs_by_ids
from app.reads.users import users_by_ids
from app.views import PolicyView


async def users_of_policy(db: Database, policy: PolicyView, watched: set[int]) -> list[UserEvent]:
    async with db.read() as session:
        users = await users_by_ids(session, policy.tenant_id, sorted(watched))
        mine = [u for u in users.values() if u.policy_id == policy.id]
        run_ids = [r for u in mine for r in (u.current_run_id, u.last_finished_run_id) if r]
        runs = await runs_by_ids(session, policy.tenant_id, run_ids) if run_ids else {}
    return [
        UserEvent(
            "policy",
            replace(
                user,
                policy=policy,
                current_run=runs.get(user.current_run_id or 0),
                last_finished_run=runs.get(user.last_finished_run_id or 0),
            ),
        )
        for user in mine
    ]
