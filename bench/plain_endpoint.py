"""The baseline for the GraphQL overhead: the Sync Status page's first page (no filter, by email,
10 rows, totalCount) as a plain Starlette JSON endpoint, over the same SQL and the same database
engine (SQLAlchemy + aiosqlite, same pragmas and pool) as app/reads, rendered to JSON by hand.

Runs in its own uvicorn process, configured like `syncstatus serve`:
    SYNCSTATUS_DATABASE_URL=... python bench/plain_endpoint.py --port 8001
GET /page with `Authorization: Bearer <token>` answers what the GraphQL page query answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import bindparam, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.auth.tokens import Authenticator, bearer_token
from app.domain.errors import ServiceError
from app.domain.ids import encode_id
from app.domain.timeutil import from_micros
from app.ops.timing import ServerTiming
from app.reads.pagination import encode_cursor
from app.store.engine import open_database
from app.web.settings import Settings

PAGE_SIZE = 10
# The statements app/reads issues for this page (see app/reads/users.py, runs.py), with the
# columns this page shows. A pending requestSyncs row bumps the user's version
# (app/store/pending_requests.py), so the version reads it as app/reads does.
USERS_SQL = text(
    "SELECT id, email, status, latest_sync_at, "
    "version + coalesce((SELECT bumps FROM sync_requests r WHERE r.user_id = sync_users.id), 0)"
    " AS version, policy_id, current_run_id "
    "FROM sync_users WHERE tenant_id = :tenant ORDER BY email, id LIMIT :limit"
)
POLICIES_SQL = text(
    "SELECT id, name, active, revision FROM policies WHERE tenant_id = :tenant AND id IN :ids"
).bindparams(bindparam("ids", expanding=True))
RUNS_SQL = text(
    "SELECT id, items_total, items_processed FROM sync_runs "
    "WHERE tenant_id = :tenant AND id IN :ids"
).bindparams(bindparam("ids", expanding=True))
COUNT_SQL = text("SELECT coalesce(sum(count), 0) FROM status_counts WHERE tenant_id = :tenant")


def _time(micros: int | None) -> str | None:
    if micros is None:
        return None
    return from_micros(micros).isoformat().replace("+00:00", "Z")


def _progress(total: int | None, processed: int) -> float | None:
    if total is None:
        return None
    return 1.0 if total == 0 else min(1.0, processed / total)


def create_app(settings: Settings) -> Starlette:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        db = open_database(settings.database_url)
        state["db"] = db
        state["auth"] = Authenticator(db)
        try:
            yield
        finally:
            await db.dispose()

    async def page(request: Request) -> Response:
        try:
            principal = await state["auth"].authenticate(
                bearer_token(request.headers.get("authorization"))
            )
        except ServiceError as error:
            return Response(
                json.dumps({"error": error.message}), 401, media_type="application/json"
            )
        tenant = principal.tenant_id
        async with state["db"].read() as session:
            rows = (
                await session.execute(USERS_SQL, {"tenant": tenant, "limit": PAGE_SIZE + 1})
            ).all()
            more = len(rows) > PAGE_SIZE
            rows = rows[:PAGE_SIZE]
            policy_ids = sorted({r.policy_id for r in rows if r.policy_id is not None})
            run_ids = sorted({r.current_run_id for r in rows if r.current_run_id is not None})
            policies = {
                p.id: p
                for p in (
                    await session.execute(POLICIES_SQL, {"tenant": tenant, "ids": policy_ids})
                    if policy_ids
                    else []
                )
            }
            runs = {
                r.id: r
                for r in (
                    await session.execute(RUNS_SQL, {"tenant": tenant, "ids": run_ids})
                    if run_ids
                    else []
                )
            }
            total = int(await session.scalar(COUNT_SQL, {"tenant": tenant}) or 0)
        edges = []
        for r in rows:
            policy = policies.get(r.policy_id)
            run = runs.get(r.current_run_id)
            edges.append(
                {
                    "cursor": encode_cursor("u.email", tenant, (r.email, r.id)),
                    "node": {
                        "id": encode_id("SyncUser", r.id),
                        "email": r.email,
                        "latestSyncAt": _time(r.latest_sync_at),
                        "status": r.status,
                        "version": r.version + (policy.revision if policy else 0),
                        "policy": {
                            "id": encode_id("Policy", policy.id),
                            "name": policy.name,
                            "active": bool(policy.active),
                        }
                        if policy
                        else None,
                        "currentRun": {"progress": _progress(run.items_total, run.items_processed)}
                        if run
                        else None,
                    },
                }
            )
        body = {
            "data": {
                "syncUsers": {
                    "edges": edges,
                    "pageInfo": {
                        "hasNextPage": more,
                        "hasPreviousPage": False,
                        "startCursor": edges[0]["cursor"] if edges else None,
                        "endCursor": edges[-1]["cursor"] if edges else None,
                    },
                    "totalCount": total,
                }
            }
        }
        return Response(json.dumps(body), media_type="application/json")

    return Starlette(
        routes=[Route("/page", page)],
        middleware=[Middleware(ServerTiming)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings.from_env()
    uvicorn.run(
        create_app(settings), host=settings.host, port=args.port, log_level=settings.log_level
    )


if __name__ == "__main__":
    main()
