"""A worker that starts a run and goes silent, on a real server with
SYNCSTATUS_RUN_TIMEOUT_SECONDS=3 (its reaper looks every second or so): a subscriber sees the run
end as FAILED with WORKER_LOST and the metrics change, while a run whose worker keeps reporting
goes on; the silent worker's late finish gets CONFLICT, its late report the failed run; the
failure shows up in failureReasons, /metrics counts it and the server logs the batch. And
`syncstatus worker` whose reports come slower than the timeout drops the run it learns ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Tenant
from tests.server import Server, run_server, sqlite_database, start_cli
from tests.subscriptions.support import (
    METRICS_UPDATES,
    USER_UPDATES,
    Stream,
    Worker,
    add_users,
    eventually,
)

# 3 s, not less: on a loaded machine a server can stall for a second or two, and its reaper may
# then run before the busy run's queued report is read (at 2 s that ended the busy run once, in
# a loaded suite run).
TIMEOUT = 3
MESSAGE = "No report from the sync worker for 3 seconds; syncstatus ended the run."
RUN = """query($id: ID!) { node(id: $id) { ... on SyncRun { state errorCode errorMessage } } }"""
REPORT = """mutation($r: ID!, $p: Int!) {
  reportSyncProgress(runId: $r, itemsProcessed: $p, changes: $p) { state itemsProcessed } }"""
REASONS = "query { failureReasons(first: 10) { errorCode sampleMessage userCount } }"
FINISH = "mutation($r: ID!) { finishSyncRun(runId: $r) { state } }"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    env = {
        "SYNCSTATUS_RUN_TIMEOUT_SECONDS": str(TIMEOUT),
        "SYNCSTATUS_LOG_FORMAT": "json",
        "SYNCSTATUS_LOG_LEVEL": "info",
    }
    with sqlite_database() as url, run_server(url, env=env) as running:
        yield running


def timed_out_total(server: Server) -> float:
    body = httpx.get(f"{server.url}/metrics", timeout=10).text
    lines = [
        line for line in body.splitlines() if line.startswith("syncstatus_runs_timed_out_total")
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


async def test_a_silent_workers_run_ends_failed_and_subscribers_see_it(server: Server) -> None:
    tenant = Tenant(server, "silent-workers")
    _, (silent_user, busy_user) = await add_users(tenant, 2)
    worker = Worker(tenant)
    assert timed_out_total(server) == 0
    async with (
        tenant.viewer.websocket() as session,
        Stream(session, USER_UPDATES, ids=[silent_user]) as users,
        Stream(session, METRICS_UPDATES) as metrics,
    ):
        await metrics.next(within=10)  # the metrics at once: subscribed
        busy = await worker.start(busy_user)
        silent = await worker.start(silent_user)
        await worker.progress(silent, 10)
        last_report = time.monotonic()
        await users.until(lambda i: i["syncUserUpdated"]["currentRun"] is not None)

        async def keep_reporting() -> None:
            processed = 0
            while True:
                processed += 1
                await worker.progress(busy, processed)
                await asyncio.sleep(0.4)

        reporter = asyncio.create_task(keep_reporting())
        try:
            ended = await users.until(
                lambda i: i["syncUserUpdated"]["status"] == "FAILED", within=20
            )
            silent_for = time.monotonic() - last_report
            figures = await metrics.until(
                lambda i: i["syncMetricsUpdated"]["failedSyncs"] == 1, within=10
            )
            await asyncio.sleep(TIMEOUT + 1.5)  # the busy run outlives a timeout and a round
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    user = ended[-1]["syncUserUpdated"]
    assert user["currentRun"] is None
    assert user["lastFinishedRun"] == {"id": silent, "state": "FAILED"}
    assert silent_for >= TIMEOUT - 0.5  # not before the timeout (the clocks differ a little)
    after = figures[-1]["syncMetricsUpdated"]
    assert (after["syncsInProgress"], after["failedSyncs"]) == (1, 1)  # the busy run goes on

    run = (await tenant.viewer.execute(RUN, id=silent))["node"]
    assert run == {"state": "FAILED", "errorCode": "WORKER_LOST", "errorMessage": MESSAGE}
    # The worker that comes back learns its run was ended.
    assert await tenant.worker.error_code(FINISH, r=silent) == "CONFLICT"
    late = (await tenant.worker.execute(REPORT, r=silent, p=500))["reportSyncProgress"]
    assert late == {"state": "FAILED", "itemsProcessed": 10}
    reasons = (await tenant.viewer.execute(REASONS))["failureReasons"]
    assert reasons == [{"errorCode": "WORKER_LOST", "sampleMessage": MESSAGE, "userCount": 1}]
    assert await worker.finish(busy) == "SUCCEEDED"  # never ended: its worker kept reporting
    assert timed_out_total(server) == 1

    def logged() -> list[dict[str, object]]:
        found = []
        for line in server.log().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("message") == "ended runs whose worker went silent":
                    found.append(record)
        return found

    await eventually(lambda: bool(logged()))
    [record] = logged()
    assert (record["runs"], record["timeout_seconds"], record["error_code"]) == (
        1,
        TIMEOUT,
        "WORKER_LOST",
    )


@contextlib.contextmanager
def slow_worker(server: Server, token: str) -> Iterator[Path]:
    """`syncstatus worker` at a tenth of the speed (5-10 s between reports, far over the 3 s
    timeout), one run at a time, until the block ends; its log's path."""
    options = ["--url", server.graphql_url, "--token", token, "--speed", "0.1"]
    with tempfile.NamedTemporaryFile(prefix="syncstatus-worker-", delete=False) as log_file:
        log_path = Path(log_file.name)
    argv = ["worker", "--concurrency", "1", *options]
    process = start_cli(argv, {**os.environ, "SYNCSTATUS_LOG_LEVEL": "info"}, log_path)
    try:
        yield log_path
    finally:
        process.terminate()
        process.wait(20)
        log_path.unlink(missing_ok=True)


def text_of(path: Path) -> str:
    return path.read_text(errors="replace")


async def test_the_reference_worker_drops_a_run_the_server_ended(server: Server) -> None:
    tenant = Tenant(server, "slow-worker")
    _, [user_id] = await add_users(tenant, 1)
    await tenant.operator.execute(
        "mutation($u: ID!) { requestSync(userId: $u) { id } }", u=user_id
    )  # due at once
    token = tenant.worker.token
    assert token
    with slow_worker(server, token) as log_path:
        await eventually(lambda: "was ended meanwhile (FAILED)" in text_of(log_path), 40)
        log = text_of(log_path)
    assert "claimed run" in log and "finished run" not in log and "Traceback" not in log
    run = (await tenant.viewer.execute(RUN, id=log.split("claimed run ")[1].split()[0]))["node"]
    assert run == {"state": "FAILED", "errorCode": "WORKER_LOST", "errorMessage": MESSAGE}
