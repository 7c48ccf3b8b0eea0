"""A claim's answer comes from its own transaction: `claimDueSyncRuns { user { … } }` reads
nothing after the commit. A read there could fail (the database lost just then) after the runs
were started, and the worker, answered with an error, never drove them: they stayed RUNNING."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.api_tests import helpers as h
from tests.app_server import AppServer
from tests.conftest import Tenant

CLAIM = """mutation { claimDueSyncRuns(limit: 10) {
  id state user { id email status version currentRun { id } } } }"""


class OutsideTheWriter:
    """Reads of users or runs off SQLite's writer thread (where every write transaction runs)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.current_thread().name.startswith("sqlite-writer"):
            return
        if "sync_users" in statement or "sync_runs" in statement:
            self.statements.append(statement)


@pytest.fixture
def reads(server: AppServer) -> Iterator[OutsideTheWriter]:
    if not server.database_url.startswith("sqlite"):
        pytest.skip("only SQLite tells the claim's statements (its writer thread) from reads")
    recorder = OutsideTheWriter()
    event.listen(Engine, "before_cursor_execute", recorder)
    try:
        yield recorder
    finally:
        event.remove(Engine, "before_cursor_execute", recorder)


async def test_a_claims_answer_needs_no_read_after_its_commit(
    tenant: Tenant, reads: OutsideTheWriter
) -> None:
    policy = await h.create_policy(tenant.admin, "Hourly", interval=60)
    added = await h.add_users(tenant.admin, ["a@claim.example", "b@claim.example"], policy["id"])
    await tenant.worker.execute("query { syncMetrics { totalUsers } }")  # the token is known
    reads.statements.clear()
    claimed = (await tenant.worker.execute(CLAIM))["claimDueSyncRuns"]
    assert reads.statements == []
    assert sorted(r["user"]["email"] for r in claimed) == ["a@claim.example", "b@claim.example"]
    for run in claimed:
        assert run["state"] == "RUNNING"
        assert run["user"]["status"] == "IN_PROGRESS"
        assert run["user"]["currentRun"] == {"id": run["id"]}
        # The same user, version included, as a read after the commit finds it.
        assert run["user"]["version"] == (await h.user(tenant.viewer, run["user"]["id"]))["version"]
    assert {r["user"]["id"] for r in claimed} == {u["id"] for u in added}
