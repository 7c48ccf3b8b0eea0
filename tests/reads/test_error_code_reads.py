"""The errorCode filter below the API, on SQLite: exact counts and keyset pages against brute
force for random combinations with every other filter, on the planned access path (the partial
error-code indexes) and on a plain walk, in a file with two tenants."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert

from app.domain.timeutil import MICROS_PER_HOUR
from app.reads import users as reads
from app.reads.pagination import PageArgs
from app.store.engine import Database
from app.store.models import FailureReason, Policy, SyncUser, Tenant
from tests.server import open_sqlite

H = MICROS_PER_HOUR
BASE = 1_790_000_000_000_000 // H * H
CODES = ("ERR_A", "ERR_B", "ERR_C")


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[tuple[Database, int, list[int], list[dict[str, Any]]]]:
    rng = random.Random(5)
    async with open_sqlite() as db:
        kept: list[dict[str, Any]] = []
        first_policies: list[int] = []
        async with db.write() as session:
            for t in range(2):
                tenant = Tenant(name=f"t{t}", created_at=0)
                session.add(tenant)
                await session.flush()
                policies = [
                    Policy(
                        tenant_id=tenant.id,
                        name=f"p{k}",
                        active=True,
                        sync_interval_minutes=60,
                        services="MAIL",
                        user_count=0,
                        revision=0,
                        created_at=0,
                        updated_at=0,
                    )
                    for k in range(2)
                ]
                session.add_all(policies)
                await session.flush()
                rows = []
                for i in range(2400 if t == 0 else 300):
                    status = rng.choice(reads.STATUSES)
                    latest = 0 if status == "NEVER_SYNCED" else BASE + rng.randrange(20 * H)
                    local = f"{rng.choice(('anna', 'li', 'omar'))}.{rng.choice(('chen', 'x'))}{i}"
                    rows.append(
                        {
                            "tenant_id": tenant.id,
                            "email": f"{local}@t{t}.example",
                            "destination_email": f"{local}@dest.example",
                            "policy_id": rng.choice([None, *(p.id for p in policies)]),
                            "status": status,
                            "latest_sync_at": latest or None,
                            "latest_sort": latest,
                            "sync_requested": False,
                            "unresolved_failure_count": 0,
                            "version": 1,
                            "created_at": 0,
                            "error_code": rng.choice(CODES) if status == "FAILED" else None,
                        }
                    )
                inserted = await session.execute(insert(SyncUser).returning(SyncUser.id), rows)
                for row, user_id in zip(rows, inserted.scalars(), strict=True):
                    row["id"] = user_id
                counts = Counter(r["error_code"] for r in rows if r["error_code"])
                session.add_all(
                    FailureReason(
                        tenant_id=tenant.id,
                        error_code=code,
                        user_count=n,
                        sample_message="",
                        last_seen_at=1,
                    )
                    for code, n in counts.items()
                )
                if t == 0:
                    kept, first_policies = rows, [p.id for p in policies]
                    tenant_id = tenant.id
        yield db, tenant_id, first_policies, kept


def _matches(user: dict[str, Any], filt: reads.UserFilter) -> bool:
    if user["error_code"] != filt.error_code:
        return False
    if filt.status is not None and user["status"] != filt.status:
        return False
    if filt.policy_id is not None and user["policy_id"] != filt.policy_id:
        return False
    latest = user["latest_sort"]
    if filt.ranged and latest <= 0:
        return False
    if filt.latest_sync_from is not None and latest < filt.latest_sync_from:
        return False
    if filt.latest_sync_to is not None and latest > filt.latest_sync_to:
        return False
    term = filt.term
    return not term or term in user["email"] or term in user["destination_email"]


def _filters(policies: list[int], count: int) -> list[reads.UserFilter]:
    rng = random.Random(11)
    found = []
    for _ in range(count):
        low = rng.choice([None, BASE + rng.randrange(20 * H)])
        high = rng.choice([None, BASE + rng.randrange(20 * H)])
        if low is not None and high is not None and low > high:
            low, high = high, low
        found.append(
            reads.UserFilter(
                email_contains=rng.choice([None, None, "anna", "li.c", "x1", "zz"]),
                latest_sync_from=low,
                latest_sync_to=high,
                policy_id=rng.choice([None, None, *policies, 10**6]),
                status=rng.choice([None, None, "FAILED", "SYNCED"]),
                error_code=rng.choice([*CODES, "ERR_NONE"]),
            )
        )
    return found


async def _all(
    db: Database, tenant: int, filt: reads.UserFilter, order: str, access: Any
) -> list[int]:
    ids: list[int] = []
    after = None
    async with db.read() as session:
        while True:
            result = await reads.user_page(
                session, tenant, filt, order, PageArgs(first=25, after=after), access=access
            )
            ids += [view.id for _, view in result.page.items]
            if not result.page.has_next:
                return ids
            after = result.page.items[-1][0]


@pytest.mark.parametrize("order", ["EMAIL_ASC", "LATEST_SYNC_DESC"])
async def test_pages_and_counts(world: Any, order: str) -> None:
    db, tenant, policies, users = world
    nonempty = 0
    for filt in _filters(policies, 60):
        kept = [u for u in users if _matches(u, filt)]
        key = (
            (lambda u: (u["email"], u["id"]))
            if order == "EMAIL_ASC"
            else (lambda u: (u["latest_sort"], u["id"]))
        )
        expected = [u["id"] for u in sorted(kept, key=key, reverse=order != "EMAIL_ASC")]
        nonempty += len(expected) > 25  # more than a page
        async with db.read() as session:
            assert await reads.user_count(session, tenant, filt) == len(expected), filt
        for access in (None, reads.BY_ERROR[order], reads.Access(frozenset({"tenant"}))):
            assert await _all(db, tenant, filt, order, access) == expected, (filt, access)
    assert nonempty >= 8
