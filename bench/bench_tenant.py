"""A benchmark tenant: one active policy and N users with predictable emails, added the way
the service adds them (app.admin.user_admin.add_users), 1,000 per transaction. Imported by the
bench scripts (bench/ is their sys.path[0]); they put the project root on sys.path first."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from app.admin import user_admin
from app.admin.policies import PolicyInput, create_policy
from app.auth.tokens import tenant_by_name
from app.events.messages import Publisher
from app.store.engine import Database
from app.store.unit_of_work import unit_of_work

BATCH = 1000


class DropEvents:
    """A broadcast that drops what it is given: a bench's setup announces nothing."""

    async def publish(self, channel: str, message: Any) -> None:
        return None


@dataclass
class BenchTenant:
    tenant_id: int
    user_ids: list[int]  # row ids, in email order


async def populate(db: Database, users: int) -> BenchTenant:
    async with db.write() as session:
        tenant = await tenant_by_name(session, f"Bench{random.randrange(10**9)}", create=True)
        assert tenant is not None
        policy, _ = await create_policy(
            session, tenant.id, 0, PolicyInput("Bench", None, True, 60, ["MAIL"])
        )
        tenant_id, policy_id = tenant.id, policy.id
    publisher = Publisher(DropEvents())
    ids: list[int] = []
    for start in range(0, users, BATCH):
        rows = [
            (f"user{i:07d}@m365.example", f"user{i:07d}@g.example", policy_id)
            for i in range(start, min(users, start + BATCH))
        ]
        async with unit_of_work(db, publisher) as work:
            added, _ = await user_admin.add_users(work.session, tenant_id, work.now, rows)
            ids += [u.id for u in added]
    return BenchTenant(tenant_id, ids)
