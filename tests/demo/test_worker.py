"""`syncstatus worker` as a separate process against a plain `serve` server (no simulator in it):
it claims and finishes runs through the public GraphQL mutations only, with a WORKER token.
Runs on both backends (the session server of tests/conftest.py). Every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.demo.seed import RUN_ERRORS
from tests.conftest import Tenant
from tests.demo.support import until
from tests.server import Process, free_port, start_cli

POLICY = """mutation($name: String!) {
  createPolicy(input: {name: $name, active: true, syncIntervalMinutes: 60}) { id }
}"""
ADD = "mutation($users: [SyncUserInput!]!) { addSyncUsers(users: $users) { id } }"
# Cost 2,101 (a missing first would count as 10 failed items per run: 11,101, over the limit).
USERS = """{
  syncMetrics { syncsInProgress changesLast24h failedSyncs }
  syncUsers(first: 100) { edges { node {
    id email status version
    runs(first: 10) { totalCount edges { node {
      state itemsTotal itemsProcessed itemsFailed changes errorCode errorMessage
      failedItems(first: 1) { totalCount }
    } } }
  } } }
}"""


class WorkerProcess:
    def __init__(self, process: Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        """Signals the worker and waits for it to exit; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker ignored {sig!r}:\n{self.log()[-3000:]}") from None


@contextmanager
def worker(url: str, token: str, *args: str) -> Iterator[WorkerProcess]:
    with tempfile.NamedTemporaryFile(prefix="syncstatus-worker-", delete=False) as log_file:
        log_path = Path(log_file.name)
    argv = ["worker", "--url", url, "--token", token, *args]
    process = start_cli(argv, {**os.environ, "SYNCSTATUS_LOG_LEVEL": "info"}, log_path)
    running = WorkerProcess(process, log_path)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)


async def add_due_users(tenant: Tenant, count: int) -> list[str]:
    """Users of an active policy, never synced: due at once."""
    policy = (await tenant.admin.execute(POLICY, name="Hourly"))["createPolicy"]["id"]
    users = [
        {"email": f"u{k}@src.example.com", "destinationEmail": f"u{k}@dst.example.com"}
        for k in range(count)
    ]
    added = await tenant.admin.execute(ADD, users=[{**u, "policyId": policy} for u in users])
    return [user["id"] for user in added["addSyncUsers"]]


def users_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in data["syncUsers"]["edges"]]


async def test_two_workers_claim_and_finish_every_due_user_once(tenant: Tenant) -> None:
    await add_due_users(tenant, 8)
    token = tenant.worker.token
    assert token
    url = tenant.server.graphql_url
    options: Sequence[str] = ("--speed", "8", "--concurrency", "3")
    with worker(url, token, *options) as one, worker(url, token, *options) as two:

        async def all_finished() -> dict[str, Any] | None:
            # The query's root fields resolve concurrently, each in its own read: a finish
            # committed between them shows in the users and not yet in the metrics (seen once
            # in CI). Done is when both say so: a counter left behind fails the wait.
            data = await tenant.viewer.execute(USERS)
            done = all(u["status"] not in ("NEVER_SYNCED", "IN_PROGRESS") for u in users_of(data))
            return data if done and data["syncMetrics"]["syncsInProgress"] == 0 else None

        data = await until("the workers finish a run for every due user", all_finished, 90)
        assert one.stop() == 0 and two.stop() == 0
        logs = one.log() + two.log()
    assert "Traceback" not in logs
    assert logs.count("claimed run") == 8 and logs.count("finished run") == 8
    total_changes = 0
    for user in users_of(data):
        # Claims never hand one user to both workers: exactly one run each.
        assert user["runs"]["totalCount"] == 1, user
        run = user["runs"]["edges"][0]["node"]
        assert user["version"] >= 3  # added 1, started 2, finished 3 (+ progress)
        assert run["itemsTotal"] is not None and run["itemsProcessed"] <= run["itemsTotal"]
        if run["state"] == "FAILED":
            assert (run["errorCode"], run["errorMessage"]) in RUN_ERRORS
        else:
            assert run["itemsProcessed"] == run["itemsTotal"] and run["errorCode"] is None
            warned = run["state"] == "COMPLETED_WITH_WARNING"
            assert warned == (run["itemsFailed"] > 0) == (run["failedItems"]["totalCount"] > 0)
        total_changes += run["changes"]
    metrics = data["syncMetrics"]
    assert metrics["syncsInProgress"] == 0
    assert metrics["changesLast24h"] == total_changes
    assert metrics["failedSyncs"] == sum(u["status"] == "FAILED" for u in users_of(data))


async def test_ctrl_c_finishes_runs_in_flight_as_stopped(tenant: Tenant) -> None:
    await add_due_users(tenant, 2)  # claimed together (two starts per poll)
    token = tenant.worker.token
    assert token
    # Slowed down, so the runs are still in flight when the worker is stopped.
    with worker(tenant.server.graphql_url, token, "--speed", "0.2") as running:

        async def in_progress() -> int | None:
            data = await tenant.viewer.execute(USERS)
            n = sum(u["status"] == "IN_PROGRESS" for u in users_of(data))
            return n if n == 2 else None

        await until("the worker claims the due users", in_progress, 30)
        assert running.stop(signal.SIGINT) == 0
        log = running.log()
    assert "Traceback" not in log and "stopped" in log
    data = await tenant.viewer.execute(USERS)
    for user in users_of(data):
        run = user["runs"]["edges"][0]["node"]
        assert user["status"] == "FAILED" and run["errorCode"] == "ERR_WORKER_STOPPED"
    assert data["syncMetrics"]["syncsInProgress"] == 0


async def test_refused_token_ends_the_worker(tenant: Tenant) -> None:
    viewer = tenant.viewer.token
    assert viewer
    for token, reason in (("sst_not-a-token", "UNAUTHENTICATED"), (viewer, "FORBIDDEN")):
        with worker(tenant.server.graphql_url, token) as running:
            assert running.process.wait(timeout=30) == 1
            assert reason in running.log() and "Traceback" not in running.log()


def test_unreachable_server_is_retried_until_stopped() -> None:
    url = f"http://127.0.0.1:{free_port()}/graphql"
    with worker(url, "sst_whatever") as running:
        deadline = time.monotonic() + 20
        while "retrying in" not in running.log() and time.monotonic() < deadline:
            assert running.process.poll() is None, running.log()
            time.sleep(0.2)
        assert "retrying in" in running.log()
        assert running.stop(signal.SIGTERM) == 0
        assert "Traceback" not in running.log()
