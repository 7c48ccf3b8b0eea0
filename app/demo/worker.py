"""`syncstatus worker`: the simulated sync worker as a separate process, through the public
GraphQL mutations only (claimDueSyncRuns, reportSyncProgress, finishSyncRun) with a WORKER token.

It follows the same plans as the in-process simulator (app.demo.simulation). Transient errors
(server unreachable, 5xx, unexpected errors) are retried with exponential backoff; reports are
cumulative, so a retried report is harmless. A token that is refused ends the worker (exit 1).
SIGINT (Ctrl-C) or SIGTERM stops it: it claims nothing more and finishes its runs in flight as
FAILED with ERR_WORKER_STOPPED, so no user stays in progress for good; a second signal quits
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from app.demo.simulation import MAX_IN_FLIGHT, STARTS_PER_TICK, RunPlan, Step, plan_run, rng_for

log = logging.getLogger("syncstatus.worker")
POLL_SECONDS = 1.0  # while runs are being claimed
IDLE_POLL_SECONDS = 3.0  # while nothing is due
MAX_BACKOFF_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 15.0
# A report or finish is retried this long through an outage (database or network) before its run
# is given up: a run given up stays in progress, so outlast any ordinary restart or failover.
WRITE_RETRY_SECONDS = 300.0
STOP_GRACE_SECONDS = 5.0
STOPPED = ("ERR_WORKER_STOPPED", "The sync worker stopped before the run finished")
FATAL_CODES = frozenset({"UNAUTHENTICATED", "FORBIDDEN"})
RUN_GONE_CODES = frozenset({"NOT_FOUND", "CONFLICT"})

RUN_FIELDS = "id kind service state itemsTotal itemsProcessed changes user { email }"
CLAIM = f"""mutation Claim($limit: Int!) {{
  claimDueSyncRuns(limit: $limit) {{ {RUN_FIELDS} }}
}}"""
REPORT = """mutation Report($runId: ID!, $processed: Int!, $changes: Int!, $total: Int,
                        $failed: [FailedItemInput!]) {
  reportSyncProgress(runId: $runId, itemsProcessed: $processed, changes: $changes,
                     itemsTotal: $total, failedItems: $failed) { id state }
}"""
FINISH = """mutation Finish($runId: ID!, $code: String, $message: String) {
  finishSyncRun(runId: $runId, errorCode: $code, errorMessage: $message) {
    id state itemsProcessed itemsFailed changes
  }
}"""


class ApiError(Exception):
    """A GraphQL error with its extensions.code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES

    @property
    def run_gone(self) -> bool:
        return self.code in RUN_GONE_CODES


class Transient(Exception):
    """Worth retrying: no answer, a 5xx, or an unexpected server error."""


class Api:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        try:
            response = await self._http.post(
                self._url, json={"query": query, "variables": variables}
            )
        except httpx.HTTPError as error:
            raise Transient(f"{type(error).__name__}: {error or 'no answer'}") from error
        if response.status_code >= 500:
            raise Transient(f"HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise Transient(f"HTTP {response.status_code}, not JSON") from None
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            first = errors[0]
            code = str((first.get("extensions") or {}).get("code", "INTERNAL_SERVER_ERROR"))
            if code == "INTERNAL_SERVER_ERROR":
                raise Transient(f"{code}: {first.get('message')}")
            raise ApiError(code, str(first.get("message")))
        if response.status_code != 200 or not isinstance(body.get("data"), dict):
            raise Transient(f"HTTP {response.status_code}")
        return body["data"]


@dataclass(slots=True)
class Claimed:
    id: str
    email: str
    plan: RunPlan
    finished: bool = False


class Worker:
    def __init__(self, api: Api, *, max_in_flight: int = MAX_IN_FLIGHT, speed: float = 1.0) -> None:
        self._api = api
        self._max_in_flight = max_in_flight
        self._speed = speed
        self._runs: dict[str, tuple[Claimed, asyncio.Task[None]]] = {}
        self._failure: ApiError | None = None
        self.stop = asyncio.Event()

    async def run(self) -> int:
        """Claims and drives runs until stopped; returns the exit status."""
        backoff = 0.0
        try:
            while not self.stop.is_set():
                claimed = 0
                free = min(STARTS_PER_TICK, self._max_in_flight - len(self._runs))
                if free > 0:
                    try:
                        claimed = await self._claim(free)
                        backoff = 0.0
                    except ApiError as error:
                        self._fail(error)
                        break
                    except Transient as error:
                        backoff = min(max(1.0, backoff * 2), MAX_BACKOFF_SECONDS)
                        log.warning("claiming failed (%s); retrying in %.0f s", error, backoff)
                idle = not claimed and not self._runs
                delay = backoff or (IDLE_POLL_SECONDS if idle else POLL_SECONDS / self._speed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
        finally:
            await self._stop_runs()
        if self._failure:
            log.error("stopped: the server refused the worker (%s)", self._failure)
            return 1
        log.info("stopped")
        return 0

    def _fail(self, error: ApiError) -> None:
        self._failure = self._failure or error
        self.stop.set()

    async def _claim(self, limit: int) -> int:
        runs = (await self._api.execute(CLAIM, limit=limit))["claimDueSyncRuns"]
        for run in runs:
            plan = plan_run(
                rng_for(run["id"]),
                run["kind"],
                run["service"],
                items_total=run["itemsTotal"],
                items_processed=run["itemsProcessed"],
                changes=run["changes"],
            )
            claimed = Claimed(run["id"], run["user"]["email"], plan)
            log.info(
                "claimed run %s for %s: %s %s, %d items",
                claimed.id,
                claimed.email,
                run["kind"],
                run["service"],
                plan.items_total,
            )
            task = asyncio.create_task(self._drive(claimed))
            self._runs[claimed.id] = (claimed, task)
            task.add_done_callback(partial(self._forget, claimed.id))
        return len(runs)

    def _forget(self, run_id: str, _: asyncio.Task[None]) -> None:
        self._runs.pop(run_id, None)

    async def _drive(self, run: Claimed) -> None:
        try:
            for step in run.plan.steps:
                await asyncio.sleep(step.delay / self._speed)
                data = await self._write(REPORT, runId=run.id, **_report_variables(step))
                state = data["reportSyncProgress"]["state"]
                if state != "RUNNING":
                    # Ended without us: the server ends runs it heard nothing from for
                    # SYNCSTATUS_RUN_TIMEOUT_SECONDS (WORKER_LOST). Nothing left to do.
                    run.finished = True
                    log.warning("run %s for %s was ended meanwhile (%s)", run.id, run.email, state)
                    return
            await asyncio.sleep(run.plan.finish_delay / self._speed)
            code, message = run.plan.error or (None, None)
            data = await self._write(FINISH, runId=run.id, code=code, message=message)
            run.finished = True
            done = data["finishSyncRun"]
            log.info(
                "finished run %s for %s: %s, %d items, %d failed, %d changes%s",
                run.id,
                run.email,
                done["state"],
                done["itemsProcessed"],
                done["itemsFailed"],
                done["changes"],
                f" ({code}: {message})" if code else "",
            )
        except ApiError as error:
            if error.fatal:
                self._fail(error)
            else:
                run.finished = True  # finished or removed by someone else: nothing left to do
                log.warning("gave up run %s for %s: %s", run.id, run.email, error)
        except Transient as error:
            log.error("gave up run %s for %s after retries: %s", run.id, run.email, error)

    async def _write(self, query: str, **variables: Any) -> dict[str, Any]:
        """A report or finish, retried with backoff while the server cannot be reached."""
        delay = 1.0
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        while True:
            try:
                return await self._api.execute(query, **variables)
            except Transient as error:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("request failed (%s); retrying in %.0f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _stop_runs(self) -> None:
        """Stops the runs in flight and reports those it did not finish as FAILED."""
        entries = list(self._runs.values())
        for _, task in entries:
            task.cancel()
        await asyncio.gather(*(task for _, task in entries), return_exceptions=True)
        left = [run for run, _ in entries if not run.finished]
        if not left or (self._failure and self._failure.fatal):
            return
        log.info("finishing %d runs in flight as %s", len(left), STOPPED[0])
        code, message = STOPPED
        results = await asyncio.gather(
            *(
                asyncio.wait_for(
                    self._api.execute(FINISH, runId=run.id, code=code, message=message),
                    STOP_GRACE_SECONDS,
                )
                for run in left
            ),
            return_exceptions=True,
        )
        for run, result in zip(left, results, strict=True):
            if isinstance(result, Exception) and not (
                isinstance(result, ApiError) and result.run_gone
            ):
                log.warning("could not finish run %s: %s", run.id, result)


def _report_variables(step: Step) -> dict[str, Any]:
    return {
        "processed": step.items_processed,
        "changes": step.changes,
        "total": step.items_total,
        "failed": [
            {
                "itemId": item.item_id,
                "itemType": item.item_type,
                "errorCode": item.error_code,
                "errorMessage": item.error_message,
            }
            for item in step.failed_items
        ]
        or None,
    }


def graphql_url(url: str) -> str:
    """The endpoint, also when given the server's address (http://host:port/)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(path="/graphql")) if parsed.path in ("", "/") else url


async def run_worker(
    url: str, token: str, *, max_in_flight: int = MAX_IN_FLIGHT, speed: float = 1.0
) -> int:
    """Runs the simulated worker against the GraphQL endpoint at `url`; returns the exit status."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    url = graphql_url(url)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=headers, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        worker = Worker(Api(http, url), max_in_flight=max_in_flight, speed=speed)
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if worker.stop.is_set() and main is not None:
                main.cancel()  # a second signal: quit at once
            else:
                log.info("stopping (again to quit at once)")
                worker.stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        log.info("worker started against %s (up to %d runs in flight)", url, max_in_flight)
        try:
            return await worker.run()
        except asyncio.CancelledError:
            log.warning("quit with runs in flight")
            return 130
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
