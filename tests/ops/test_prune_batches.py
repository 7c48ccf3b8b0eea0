"""The pruner's batches: a long history goes in many short transactions, and only what is old."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update

from app.db.models import SyncRun, SyncUser, Tenant
from app.retention import DAY_US, WINDOW, cutoff_for, prune
from app.timeutil import now_micros
from tests.server import open_sqlite


async def test_a_long_history_is_pruned_in_windows_and_the_latest_run_stays() -> None:
    now = now_micros()
    old = now - 200 * DAY_US
    async with open_sqlite() as db:
        async with db.write() as session:
            await session.execute(insert(Tenant).values(id=1, name="t", created_at=now))
            await session.execute(
                insert(SyncUser).values(
                    id=1, tenant_id=1, email="u@x.example", destination_email="u@y.example",
                    status="SYNCED", created_at=now,
                )
            )  # fmt: skip
            runs = WINDOW * 2 + 50
            await session.execute(
                insert(SyncRun),
                [
                    {
                        "id": i, "tenant_id": 1, "user_id": 1, "kind": "DELTA", "service": "MAIL",
                        "state": "SUCCEEDED", "started_at": old + i, "finished_at": old + i + 1,
                    }
                    for i in range(1, runs + 1)
                ]
                + [
                    {
                        "id": runs + 1, "tenant_id": 1, "user_id": 1, "kind": "DELTA",
                        "service": "MAIL", "state": "SUCCEEDED", "started_at": now,
                        "finished_at": now + 1,
                    }
                ],
            )  # fmt: skip
            # The latest finished run is an old one: it stays however old it is.
            await session.execute(update(SyncUser).values(last_finished_run_id=runs))
        result = await prune(db, cutoff_for(90))
        assert result.runs == runs - 1
        assert result.batches >= 3
        async with db.read() as session:
            left = list(await session.scalars(select(SyncRun.id).order_by(SyncRun.id)))
            assert left == [runs, runs + 1]
            assert await session.scalar(select(func.count()).select_from(SyncUser)) == 1
