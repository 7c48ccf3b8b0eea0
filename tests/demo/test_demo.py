"""`syncstatus demo` as a user starts it: a real server with seeded data whose simulated workers
move the page on their own, checked through GraphQL only. Every wait is bounded."""

from __future__ import annotations

import re
import time
from typing import Any

from app.demo.seed import RUN_ERRORS
from app.demo.simulation import MAX_IN_FLIGHT
from tests.api import Api
from tests.demo.support import until
from tests.server import Server, run_server, sqlite_database

USERS = 50
# The simulated runs at four times their speed (`demo --speed`): runs of 1-8 s instead of 5-30 s,
# the same runs, reports and checks in a quarter of the waiting.
DEMO_ARGS = ("--users", str(USERS), "--speed", "4")
URL_RE = re.compile(r"http://127\.0\.0\.1:(\d+)/#token=(sst_[\w-]+)")
SNAPSHOT = """{
  syncMetrics { totalUsers syncsInProgress failedSyncs changesLast24h }
  syncUsers(first: 100) { totalCount edges { node {
    id email status version latestSyncAt
    currentRun { id state }
    lastFinishedRun { id state itemsTotal itemsProcessed itemsFailed changes errorCode
                      errorMessage startedAt finishedAt failedItems { totalCount } }
  } } }
}"""
IN_PROGRESS = """{
  syncMetrics { syncsInProgress }
  syncUsers(filter: {status: IN_PROGRESS}) { totalCount }
}"""
RUN = "query($id: ID!) { syncRun(id: $id) { state finishedAt } }"


def demo_api(server: Server) -> Api:
    """The viewer token the demo printed, with the page URL that carries it."""
    match = None
    deadline = time.monotonic() + 10
    while match is None and time.monotonic() < deadline:
        match = list(URL_RE.finditer(server.log()))[-1:] or None
        time.sleep(0.05)
    assert match, f"no page URL with #token= in the output:\n{server.log()[-2000:]}"
    port, token = match[0].groups()
    assert int(port) == server.port
    return Api(server.graphql_url, server.ws_url, token)


def users_of(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["node"]["id"]: e["node"] for e in snapshot["syncUsers"]["edges"]}


async def test_demo_moves_on_its_own_and_restarts_without_reseeding() -> None:
    with sqlite_database() as url:
        with run_server(url, command="demo", args=DEMO_ARGS) as server:
            api = demo_api(server)
            first = await api.execute(SNAPSHOT)
            assert first["syncMetrics"]["totalUsers"] == USERS
            assert first["syncUsers"]["totalCount"] == USERS
            before = users_of(first)

            async def moved() -> dict[str, Any] | None:
                now = await api.execute(SNAPSHOT)
                users = users_of(now)
                finished_new = [
                    u
                    for uid, u in users.items()
                    if u["lastFinishedRun"]
                    and u["lastFinishedRun"]["id"]
                    != (before[uid]["lastFinishedRun"] or {}).get("id")
                ]
                grew = [uid for uid, u in users.items() if u["version"] > before[uid]["version"]]
                changes_grew = (
                    now["syncMetrics"]["changesLast24h"] > first["syncMetrics"]["changesLast24h"]
                )
                if len(finished_new) >= 2 and grew and changes_grew:
                    return {"snapshot": now, "finished": finished_new}
                return None

            # Runs last 5-30 s (a quarter of that here) and a handful start at once: two finish
            # well within a minute.
            result = await until("simulated runs start and finish on their own", moved, 75)
            after = users_of(result["snapshot"])
            assert any(u["status"] != before[uid]["status"] for uid, u in after.items())
            for user in result["finished"]:
                run = user["lastFinishedRun"]
                assert user["latestSyncAt"] >= run["startedAt"]
                assert run["finishedAt"] >= run["startedAt"]
                assert run["itemsTotal"] is not None
                assert 0 <= run["itemsProcessed"] <= run["itemsTotal"]
                if run["state"] == "FAILED":
                    assert (run["errorCode"], run["errorMessage"]) in RUN_ERRORS
                    assert user["status"] in ("FAILED", "IN_PROGRESS")
                else:
                    assert run["errorCode"] is None
                    assert run["itemsProcessed"] == run["itemsTotal"]
                    warned = run["failedItems"]["totalCount"] > 0
                    assert (run["state"] == "COMPLETED_WITH_WARNING") == warned
                    assert run["itemsFailed"] == run["failedItems"]["totalCount"]

            # A handful in flight, never a crowd; the metric agrees with the list.
            async def agreed() -> int | None:
                data = await api.execute(IN_PROGRESS)
                listed = data["syncUsers"]["totalCount"]
                return listed if listed == data["syncMetrics"]["syncsInProgress"] else None

            assert 0 < await until("metric and list agree", agreed, 10) <= MAX_IN_FLIGHT
            interrupted = [
                u["currentRun"]["id"]
                for u in users_of(await api.execute(SNAPSHOT)).values()
                if u["currentRun"]
            ]
            assert interrupted
            assert f"seeded {USERS} users" in server.log()

        # A second start on the same file: no reseed, a fresh link, and the runs the first
        # process left RUNNING are taken over and finished.
        with run_server(url, command="demo", args=DEMO_ARGS) as server:
            assert "seeded" not in server.log()
            api = demo_api(server)
            again = await api.execute(SNAPSHOT)
            assert again["syncMetrics"]["totalUsers"] == USERS
            assert again["syncUsers"]["totalCount"] == USERS

            async def taken_over() -> bool | None:
                states = [
                    (await api.execute(RUN, id=run_id))["syncRun"]["state"]
                    for run_id in interrupted
                ]
                return True if "RUNNING" not in states else None

            await until("runs left RUNNING by the first process finish", taken_over, 75)
