"""GET /livez and GET /readyz. Live: the process serves. Ready: the database answers, its
schema is at the newest migration, and the broker is connected. A load balancer polls
/readyz every few seconds, so the migration check (a query of alembic_version) is cached."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import text

from app.store.engine import Database
from app.store.schema_version import schema_problem

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 2.0
SCHEMA_CACHE_SECONDS = 10.0


class Readiness:
    def __init__(self, db: Database, broadcast: Any) -> None:
        self.db = db
        self.broadcast = broadcast
        self._schema_checked = -SCHEMA_CACHE_SECONDS
        self._schema_problem: str | None = None
        self._lock = asyncio.Lock()

    async def checks(self) -> dict[str, dict[str, Any]]:
        """Each check's result: {"ok": bool, "error": str (when not ok)}."""
        database = await self._check(self._database)
        if database["ok"]:
            schema = await self._check(self._schema)
        else:
            schema = {"ok": False, "error": "not checked: the database is unreachable"}
        return {"database": database, "schema": schema, "broker": self._broker()}

    async def _check(self, probe: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                problem = await probe()
        except Exception as error:
            log.debug("readiness check failed: %r", error)
            said = f": {error}" if str(error) else ""
            problem = f"{type(error).__name__}{said}".splitlines()[0][:300]
        return {"ok": True} if problem is None else {"ok": False, "error": problem}

    async def _database(self) -> str | None:
        async with self.db.read() as session:
            await session.execute(text("SELECT 1"))
        return None

    async def _schema(self) -> str | None:
        async with self._lock:
            now = time.monotonic()
            if now - self._schema_checked >= SCHEMA_CACHE_SECONDS or self._schema_problem:
                self._schema_problem = await schema_problem(self.db)
                self._schema_checked = now
            return self._schema_problem

    def _broker(self) -> dict[str, Any]:
        backend = getattr(self.broadcast, "backend", None)
        connected = getattr(backend, "is_connected", True)  # memory:// is always there
        if connected:
            return {"ok": True}
        return {"ok": False, "error": "the broker's subscribe connection is down"}


def ready(checks: dict[str, dict[str, Any]]) -> bool:
    return all(check["ok"] for check in checks.values())
