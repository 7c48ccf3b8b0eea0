"""A tenant's failure reasons and trends recounted in plain SQL from sync_users and sync_runs,
straight from the server's database: what the counters the lifecycle keeps must equal."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.domain.timeutil import MICROS_PER_HOUR
from app.store.engine import open_database

REASONS = """
SELECT r.error_code, count(*) FROM sync_users u JOIN sync_runs r ON r.id = u.last_finished_run_id
WHERE u.tenant_id = :tenant AND u.status = 'FAILED' GROUP BY r.error_code
"""
LATEST_FAILURE = """
SELECT r.error_message, r.finished_at FROM sync_runs r
WHERE r.tenant_id = :tenant AND r.state = 'FAILED' AND r.error_code = :code
ORDER BY r.finished_at DESC, r.id DESC LIMIT 1
"""
USER_CODES = """
SELECT u.id, u.error_code, CASE WHEN u.status = 'FAILED' THEN r.error_code END
FROM sync_users u LEFT JOIN sync_runs r ON r.id = u.last_finished_run_id
WHERE u.tenant_id = :tenant
"""
STARTED = f"""
SELECT started_at / {MICROS_PER_HOUR}, count(*) FROM sync_runs WHERE tenant_id = :tenant
GROUP BY started_at / {MICROS_PER_HOUR}
"""
FINISHED = f"""
SELECT finished_at / {MICROS_PER_HOUR}, state, count(*) FROM sync_runs
WHERE tenant_id = :tenant AND finished_at IS NOT NULL
GROUP BY finished_at / {MICROS_PER_HOUR}, state
"""
CHANGES = "SELECT coalesce(sum(changes), 0) FROM sync_runs WHERE tenant_id = :tenant"
TENANT = "SELECT id FROM tenants WHERE name = :name"
FINISHED_KEY = {
    "SUCCEEDED": "runsSucceeded",
    "COMPLETED_WITH_WARNING": "runsCompletedWithWarning",
    "FAILED": "runsFailed",
}


async def recount(database_url: str, tenant_name: str) -> dict[str, Any]:
    """{reasons: {code: (users, message, last seen micros)}, mismatched_users: [...],
    hours: {hour: {runsStarted, runsSucceeded, ...}}, changes: total}"""
    db = open_database(database_url)
    try:
        async with db.read() as session:
            tenant = (await session.execute(text(TENANT), {"name": tenant_name})).scalar_one()
            params = {"tenant": tenant}
            reasons: dict[str, Any] = {}
            for code, users in (await session.execute(text(REASONS), params)).all():
                latest = await session.execute(text(LATEST_FAILURE), {**params, "code": code})
                message, at = latest.one()
                reasons[code] = (users, message or "", at)
            codes = (await session.execute(text(USER_CODES), params)).all()
            hours: dict[int, dict[str, int]] = {}
            for hour, count in (await session.execute(text(STARTED), params)).all():
                hours.setdefault(int(hour), {})["runsStarted"] = count
            for hour, state, count in (await session.execute(text(FINISHED), params)).all():
                hours.setdefault(int(hour), {})[FINISHED_KEY[state]] = count
            changes = (await session.execute(text(CHANGES), params)).scalar_one()
    finally:
        await db.dispose()
    return {
        "reasons": reasons,
        "mismatched_users": [row for row in codes if row[1] != row[2]],
        "hours": hours,
        "changes": int(changes),
    }
