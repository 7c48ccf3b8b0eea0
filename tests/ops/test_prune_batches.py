"""The pruner's batches: a long history goes in many short transactions, and only what is old."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.timeutil import now_micros
from app.ops.retention import DAY_US, WINDOW, cutoff_for, prune
from app.store.models import AuditEvent, SyncRun, SyncUser, Tenant, Webhook, WebhookDelivery
from tests.server import open_sqlite


async def _tenant_with_one_user(session: AsyncSession, now: int) -> None:
    await session.execute(insert(Tenant).values(id=1, name="t", created_at=now))
    await session.execute(
        insert(SyncUser).values(
            id=1, tenant_id=1, email="u@x.example", destination_email="u@y.example",
            status="SYNCED", created_at=now,
        )
    )  # fmt: skip


async def test_a_long_history_is_pruned_in_windows_and_the_latest_run_stays() -> None:
    now = now_micros()
    old = now - 200 * DAY_US
    async with open_sqlite() as db:
        async with db.write() as session:
            await _tenant_with_one_user(session, now)
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


async def test_old_audit_events_and_finished_deliveries_go_pending_ones_stay() -> None:
    now = now_micros()
    old = now - 200 * DAY_US
    async with open_sqlite() as db:
        async with db.write() as session:
            await session.execute(insert(Tenant).values(id=1, name="t", created_at=now))
            await session.execute(
                insert(AuditEvent),
                [
                    {"tenant_id": 1, "at": at, "actor": "cli", "action": "policy.create",
                     "summary": "s"}
                    for at in [old] * (WINDOW + 3) + [now]
                ],
            )  # fmt: skip
            await session.execute(
                insert(Webhook).values(
                    id=1, tenant_id=1, url="https://hooks.example/x", events="RUN_FAILED",
                    secret_sealed="sealed", active=True, created_at=old,
                )
            )  # fmt: skip
            deliveries = [
                (old, None, old + 5),  # delivered long ago: goes
                (old, None, None),  # given up long ago: goes
                (old, old + 10, None),  # still being retried: stays however old
                (now, None, now),  # delivered recently: stays
            ]
            await session.execute(
                insert(WebhookDelivery),
                [
                    {"id": i, "tenant_id": 1, "webhook_id": 1, "event": "RUN_FAILED",
                     "payload": "{}", "created_at": created, "attempts": 1,
                     "next_attempt_at": next_at, "delivered_at": delivered}
                    for i, (created, next_at, delivered) in enumerate(deliveries, 1)
                ],
            )  # fmt: skip
        result = await prune(db, cutoff_for(90))
        assert (result.audit_events, result.webhook_deliveries) == (WINDOW + 3, 2)
        async with db.read() as session:
            assert list(await session.scalars(select(AuditEvent.at))) == [now]
            left = list(await session.scalars(select(WebhookDelivery.id).order_by("id")))
            assert left == [3, 4]


async def test_old_runs_behind_recent_ones_in_id_order_are_pruned_too() -> None:
    """Ids need not follow start times (imported history): a recent first window must not end
    the walk before the old runs after it."""
    now = now_micros()
    old = now - 200 * DAY_US
    async with open_sqlite() as db:
        async with db.write() as session:
            await _tenant_with_one_user(session, now)
            recent, backdated = WINDOW + 20, 30
            await session.execute(
                insert(SyncRun),
                [
                    {
                        "id": i, "tenant_id": 1, "user_id": 1, "kind": "DELTA", "service": "MAIL",
                        "state": "SUCCEEDED", "started_at": (now if i <= recent else old) + i,
                        "finished_at": (now if i <= recent else old) + i + 1,
                    }
                    for i in range(1, recent + backdated + 1)
                ],
            )  # fmt: skip
            await session.execute(update(SyncUser).values(last_finished_run_id=recent))
        result = await prune(db, cutoff_for(90))
        assert result.runs == backdated
        async with db.read() as session:
            assert await session.scalar(select(func.max(SyncRun.id))) == recent
