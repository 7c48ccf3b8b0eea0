"""`syncstatus prune`: finished runs past the retention period go, with their failed items;
a user's running run and latest finished run stay, and everything the page shows (statuses,
metrics, counts) is exactly as before."""

from __future__ import annotations

from sqlalchemy import func, select, update

from app.ops.retention import DAY_US
from app.store.engine import open_database
from app.store.models import FailedItem, SyncRun
from tests.api_tests.conftest import ApiTenant
from tests.api_tests.helpers import (
    RUNS,
    add_users,
    all_users,
    batch,
    create_policy,
    item,
    metrics,
    row_id,
)
from tests.server import Server, cli


async def _runs(tenant: ApiTenant, users: list[dict[str, object]], finishes: list[dict]) -> list:
    runs = await batch(
        tenant.worker, "startSyncRun", [{"userId": u["id"], "itemsTotal": 10} for u in users]
    )
    await batch(
        tenant.worker,
        "reportSyncProgress",
        [
            {
                "runId": r["id"],
                "itemsProcessed": 4,
                "changes": 3,
                "failedItems": [item(f"m{r['id']}")],
            }
            for r in runs
        ],
    )
    if finishes:
        await batch(
            tenant.worker,
            "finishSyncRun",
            [{"runId": r["id"], **f} for r, f in zip(runs, finishes, strict=False)],
        )
    return runs


async def _history(tenant: ApiTenant, user_id: str) -> list[str]:
    page = (await tenant.viewer.execute(RUNS, id=user_id, first=100))["syncUser"]["runs"]
    assert page["totalCount"] == len(page["edges"])
    return [edge["node"]["id"] for edge in page["edges"]]


async def test_prune_keeps_what_the_page_shows(server: Server, tenant: ApiTenant) -> None:
    policy = await create_policy(tenant.admin, "hourly")
    old, recent = await add_users(
        tenant.admin, ["old@src.example", "recent@src.example"], policy["id"]
    )
    running, never = await add_users(
        tenant.admin, ["running@src.example", "never@src.example"], policy["id"]
    )
    failed = {"errorCode": "ERR_TOKEN_001", "errorMessage": "Token expired"}
    for finish in ({}, failed, {"failedItems": [item("w")]}):
        await _runs(tenant, [old, recent, running], [finish] * 3)
    (in_flight,) = await _runs(tenant, [running], [])

    db = open_database(server.database_url)
    try:
        async with db.write() as session:
            tenant_id = await session.scalar(
                select(SyncRun.tenant_id).where(SyncRun.user_id == row_id(old["id"])).limit(1)
            )
            # Everything but `recent`'s runs ended long ago.
            await session.execute(
                update(SyncRun)
                .where(SyncRun.tenant_id == tenant_id, SyncRun.user_id != row_id(recent["id"]))
                .values(
                    started_at=SyncRun.started_at - 100 * DAY_US,
                    finished_at=SyncRun.finished_at - 100 * DAY_US,
                )
            )

        async def failed_items() -> int:
            async with db.read() as session:
                return int(
                    await session.scalar(
                        select(func.count()).where(FailedItem.tenant_id == tenant_id)
                    )
                    or 0
                )

        histories = {u["email"]: await _history(tenant, u["id"]) for u in (old, recent, running)}
        assert [len(h) for h in histories.values()] == [3, 3, 4]
        items_before = await failed_items()
        users_before = await all_users(tenant.viewer)
        metrics_before = await metrics(tenant.viewer)

        output = cli(server.database_url, "prune")
        assert "pruned 4 runs" in output, output

        users_after = await all_users(tenant.viewer)
        metrics_after = await metrics(tenant.viewer)
        for node in users_before + users_after:
            node.pop("nextScheduledSyncAt")
        metrics_before.pop("asOf")
        metrics_after.pop("asOf")
        assert users_after == users_before
        assert metrics_after == metrics_before
        by_email = {u["email"]: u for u in users_after}
        # old: only its latest finished run; running: its latest finished and its running one.
        assert await _history(tenant, old["id"]) == [
            by_email["old@src.example"]["lastFinishedRun"]["id"]
        ]
        assert await _history(tenant, running["id"]) == [
            in_flight["id"],
            by_email["running@src.example"]["lastFinishedRun"]["id"],
        ]
        assert await _history(tenant, recent["id"]) == histories["recent@src.example"]
        assert await _history(tenant, never["id"]) == []
        # Each pruned run had one failed item (the warning runs, with a second one, are kept).
        assert items_before - await failed_items() == 4

        assert "pruned 0 runs" in cli(server.database_url, "prune")
        assert "keeping everything" in cli(server.database_url, "prune", "--days", "0")
    finally:
        await db.dispose()
