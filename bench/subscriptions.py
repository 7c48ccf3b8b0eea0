"""Subscription fan-out on one server process: N open dashboards and a driver making run updates.

    .venv/bin/python bench/subscriptions.py [--subscribers 1000,10000] [--whole-tenant 10]
        [--runs http:500,http:100,lifecycle:500,events:500] [--duration 20] [--users 10000]

Each of N WebSocket subscribers (raw `websockets` sockets, 2,500 per bench/ws_clients.py
process) is an open Sync Status page: syncUserUpdated for a page of 10 users with the page's
own query (app/web/static/js/queries.js), plus syncMetricsUpdated. Socket i watches page i mod
(users / 10), so at 1,000 dashboards each user is on one page, at 10,000 on ten. Then the same
with --whole-tenant subscribers without userIds (the whole tenant's stream). A driver makes
run updates at a fixed rate spread over the tenant's users: runs of start, 2 progress reports,
finish, 0.25 s apart (so the hub's progress pacing drops none), launched open-loop at rate/4 a
second; a driver that cannot keep up skips runs (--max-in-flight) and says so.

Drivers (every figure says which produced it):
- http: the worker GraphQL mutations (startSyncRun/reportSyncProgress/finishSyncRun) with a
  WORKER token over HTTP (aiohttp) to the same server process that serves the subscribers:
  the real thing, end to end.
- lifecycle: the same app run lifecycle (unit_of_work.write + app.lifecycle: commit, then publish)
  in a separate process (this one) on the same database, publishing through Redis, so the
  server only fans out.
- events: lifecycle-shaped events (the snapshots app.lifecycle publishes: user state with
  its run and policy, versions +1 per update) through the app's Publisher and Redis at the
  exact rate, without database writes; the change counters get one real write a second so
  the metrics change (and go to every dashboard) as they would. It isolates the fan-out. It
  runs last: its versions are not in the database.
The lifecycle and events drivers need --broadcast redis (the default when Redis is up).

Measured: update-to-client latency (client receive time minus the driver's time just before
sending the update, so it includes the mutation or transaction itself; one machine, one
monotonic clock), p50/p99 for start/finish events and for all; delivered/expected for start
and finish (must be 1.0: nothing lost) and for progress (may be coalesced), with the first
start/finish misses (client, user, version, and what that client did receive of the user) and
the server's own counts (/metrics: published, publish retries and failures, dropped,
coalesced, delivered), so that a shortfall shows where it happened; server RSS from
/proc/<pid>/status before and after connecting N idle subscribers; CPU of the server, the
clients and the driver; the server's garbage collections during the run and the longest
collector pause per generation so far. The machine is
shared: check that its load is low before trusting a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import Connection, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_tenant import populate  # noqa: E402

from app.auth.tokens import create_token  # noqa: E402
from app.domain.ids import encode_id  # noqa: E402
from app.domain.timeutil import now_micros  # noqa: E402
from app.domain.views import RunView  # noqa: E402
from app.events.broker import create_broadcast  # noqa: E402
from app.events.messages import Event, Publisher, UserEvent  # noqa: E402
from app.lifecycle import transitions  # noqa: E402
from app.reads.runs import policies_by_ids  # noqa: E402
from app.reads.users import users_by_ids  # noqa: E402
from app.store.counters import add_changes  # noqa: E402
from app.store.engine import open_database  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from app.store.models import Policy, SyncUser  # noqa: E402
from app.store.unit_of_work import write  # noqa: E402
from tests.private_redis import PrivateRedis  # noqa: E402
from tests.server import Server, run_server  # noqa: E402

PAGE = 10
PER_CLIENT_PROCESS = 2500
STEP_GAP = 0.25
START = "mutation($u: ID!) { startSyncRun(userId: $u, itemsTotal: 100) { id } }"
REPORT = """mutation($r: ID!, $p: Int!) {
  reportSyncProgress(runId: $r, itemsProcessed: $p, changes: $p) { id } }"""
FINISH = "mutation($r: ID!) { finishSyncRun(runId: $r) { state } }"


# -- setup ----------------------------------------------------------------------------------


@dataclass
class Fixture:
    database_url: str
    viewer: str
    worker: str
    user_ids: list[int]  # row ids
    tenant_id: int


async def prepare(database_url: str, users: int) -> Fixture:
    await asyncio.to_thread(upgrade, database_url)
    db = open_database(database_url)
    try:
        bench = await populate(db, users)
        async with db.write() as session:
            viewer = await create_token(session, bench.tenant_id, "bench viewer", "VIEWER")
            worker = await create_token(session, bench.tenant_id, "bench worker", "WORKER")
    finally:
        await db.dispose()
    return Fixture(database_url, viewer, worker, bench.user_ids, bench.tenant_id)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- clients --------------------------------------------------------------------------------


class Clients:
    """Dashboard sockets in client processes; pages[i] is what socket i watches."""

    def __init__(self, server: Server, token: str, pages: list[list[int] | None]) -> None:
        self.pages = pages
        self._dir = tempfile.mkdtemp(prefix="bench-ws-")
        self._procs: list[tuple[subprocess.Popen[str], str, int]] = []
        for n, start in enumerate(range(0, len(pages), PER_CLIENT_PROCESS)):
            chunk = pages[start : start + PER_CLIENT_PROCESS]
            spec = Path(self._dir, f"spec{n}.json")
            spec.write_text(
                json.dumps(
                    {
                        "pages": [
                            None if p is None else [encode_id("SyncUser", u) for u in p]
                            for p in chunk
                        ]
                    }
                )
            )
            out = str(Path(self._dir, f"out{n}.json"))
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "bench" / "ws_clients.py"),
                    server.ws_url,
                    token,
                    str(spec),
                    out,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self._procs.append((proc, out, start))

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _, _ in self._procs]

    def _expect(self, word: str) -> None:
        for proc, _, _ in self._procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith(word):
                raise RuntimeError(f"client process said {line!r}, expected {word!r}")

    def wait_ready(self) -> None:
        self._expect("ready")

    def _say(self, word: str) -> None:
        for proc, _, _ in self._procs:
            assert proc.stdin is not None
            proc.stdin.write(word + "\n")
            proc.stdin.flush()

    def count(self) -> int:
        self._say("count")
        total = 0
        for proc, _, _ in self._procs:
            assert proc.stdout is not None
            word, _, number = proc.stdout.readline().strip().partition(" ")
            if word != "count":
                raise RuntimeError(f"client process said {word!r}, expected 'count'")
            total += int(number)
        return total

    def record(self) -> None:
        self._say("record")
        self._expect("recording")

    def stop(self) -> dict[str, Any]:
        self._say("stop")
        self._expect("done")
        updates: list[tuple[int, int, int, float]] = []
        metrics, errors, closed = 0, [], 0
        for _, out, offset in self._procs:
            data = json.loads(Path(out).read_text())
            updates += [(offset + c, u, v, t) for c, u, v, t in data["updates"]]
            metrics += data["metrics"]
            errors += data["errors"]
            closed += data["closed"]
        return {"updates": updates, "metrics": metrics, "errors": errors, "closed": closed}

    def close(self) -> None:
        for proc, _, _ in self._procs:
            with suppress(OSError):
                self._say("exit")
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- drivers --------------------------------------------------------------------------------


@dataclass
class Update:
    user: int
    version: int
    kind: str
    sent: float
    done: float


@dataclass
class DriverResult:
    name: str
    updates: list[Update] = field(default_factory=list)
    failures: int = 0
    skipped: int = 0  # runs not started because max_in_flight runs were still going
    began: float = 0.0
    duration: float = 0.0

    @property
    def rate(self) -> float:
        """Updates per second of the runs launched (at rate/4 a second) during the run."""
        return len(self.updates) / self.duration

    @property
    def tail(self) -> float:
        """When the last update was done, in seconds after the launching ended."""
        return max((u.done for u in self.updates), default=self.began) - self.began - self.duration


class Driver:
    """Runs of start, progress 50, progress 100, finish, launched at rate/4 per second."""

    name = "?"

    def __init__(self, fixture: Fixture) -> None:
        self.fixture = fixture
        self.version: dict[int, int] = {}  # public versions, read from the database
        self.busy: set[int] = set()
        self.result = DriverResult(self.name)

    async def load_versions(self) -> None:
        db = open_database(self.fixture.database_url)
        try:
            async with db.read() as session:
                rows = await session.execute(
                    select(SyncUser.id, SyncUser.version + Policy.revision)
                    .join(Policy, Policy.id == SyncUser.policy_id)
                    .where(SyncUser.tenant_id == self.fixture.tenant_id)
                )
                self.version = {row[0]: row[1] for row in rows}
        finally:
            await db.dispose()

    async def op(self, kind: str, user: int, run: Any, processed: int = 0) -> Any:
        raise NotImplementedError

    async def run(self, user: int) -> None:
        try:
            run = await self._step("started", user, None)
            for processed in (50, 100):
                await asyncio.sleep(STEP_GAP)
                await self._step("progress", user, run, processed)
            await asyncio.sleep(STEP_GAP)
            await self._step("finished", user, run)
        except Exception:
            self.result.failures += 1
        finally:
            self.busy.discard(user)

    async def _step(self, kind: str, user: int, run: Any, processed: int = 0) -> Any:
        sent = time.monotonic()
        value = await self.op(kind, user, run, processed)
        self.version[user] += 1
        self.result.updates.append(Update(user, self.version[user], kind, sent, time.monotonic()))
        return value

    async def drive(self, rate: float, duration: float, max_in_flight: int) -> DriverResult:
        users = list(self.fixture.user_ids)
        random.shuffle(users)
        runs_per_second = rate / 4
        tasks: set[asyncio.Task[None]] = set()
        began = self.result.began = time.monotonic()
        self.result.duration = duration
        n = 0
        cursor = 0
        while (now := time.monotonic()) - began < duration:
            due = began + n / runs_per_second
            if due > now:
                await asyncio.sleep(due - now)
            n += 1
            if len(tasks) >= max_in_flight:
                self.result.skipped += 1  # saturated: this run is not started
                continue
            for _ in range(len(users)):
                user = users[cursor % len(users)]
                cursor += 1
                if user not in self.busy:
                    self.busy.add(user)
                    task = asyncio.create_task(self.run(user))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    break
        await asyncio.gather(*tasks)
        return self.result

    async def __aenter__(self) -> Driver:
        await self.load_versions()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class HttpDriver(Driver):
    name = "http (worker mutations over HTTP, same server process)"

    def __init__(self, fixture: Fixture, server: Server) -> None:
        super().__init__(fixture)
        self.url = server.graphql_url
        self.headers = {"Authorization": f"Bearer {fixture.worker}"}
        self.client: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Driver:
        # aiohttp, not httpx: at 500 requests/s with 200 in flight httpx took most of a core
        # itself (the driver, not the server, was the limit).
        self.client = aiohttp.ClientSession(
            headers=self.headers,
            connector=aiohttp.TCPConnector(limit=200),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        return await super().__aenter__()

    async def _gql(self, query: str, **variables: Any) -> dict[str, Any]:
        assert self.client is not None
        payload = {"query": query, "variables": variables}
        async with self.client.post(self.url, json=payload) as response:
            body = await response.json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        return dict(body["data"])

    async def op(self, kind: str, user: int, run: Any, processed: int = 0) -> Any:
        if kind == "started":
            data = await self._gql(START, u=encode_id("SyncUser", user))
            return data["startSyncRun"]["id"]
        if kind == "progress":
            return await self._gql(REPORT, r=run, p=processed)
        return await self._gql(FINISH, r=run)

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.close()


class LifecycleDriver(Driver):
    name = "lifecycle (app run lifecycle in a separate process, published through Redis)"

    def __init__(self, fixture: Fixture, broadcast_url: str) -> None:
        super().__init__(fixture)
        self.db = open_database(fixture.database_url)
        self.broadcast = create_broadcast(broadcast_url)
        self.publisher = Publisher(self.broadcast)

    async def __aenter__(self) -> Driver:
        await self.load_versions()
        await self.broadcast.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broadcast.disconnect()
        await self.db.dispose()

    async def op(self, kind: str, user: int, run: Any, processed: int = 0) -> Any:
        tenant = self.fixture.tenant_id

        def change(conn: Connection, now: int) -> tuple[Any, list[Event]]:
            if kind == "started":
                row = transitions.load_user(conn, tenant, user)
                started, event = transitions.start_run(conn, row, now, items_total=100)
                return started.id, [event]
            sync_run, row = transitions.load_run(conn, tenant, run)
            if kind == "progress":
                _, events = transitions.report_progress(
                    conn, sync_run, row, now, processed, processed
                )
                return run, events
            _, event = transitions.finish_run(conn, sync_run, row, now)
            return run, [event]

        return await write(self.db, self.publisher, change)


class EventsDriver(LifecycleDriver):
    name = (
        "events (lifecycle-shaped events through the app's Publisher and Redis, no database "
        "writes but a counter write a second)"
    )

    async def __aenter__(self) -> Driver:
        await super().__aenter__()
        tenant = self.fixture.tenant_id
        async with self.db.read() as session:
            users = await users_by_ids(session, tenant, self.fixture.user_ids)
            policy_ids = sorted({u.policy_id for u in users.values() if u.policy_id})
            policies = await policies_by_ids(session, tenant, policy_ids)
        self.views = {
            i: replace(u, policy=policies[u.policy_id] if u.policy_id else None)
            for i, u in users.items()
        }
        self.runs: dict[int, RunView] = {}
        self.next_run = 10**9
        self.ticker = asyncio.create_task(self._metrics_change())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.ticker.cancel()
        await super().__aexit__(*exc)

    async def _metrics_change(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await write(self.db, self.publisher, self._change_counted)

    def _change_counted(self, conn: Connection, now: int) -> tuple[None, list[Event]]:
        add_changes(conn, self.fixture.tenant_id, now, 1)
        return None, []

    async def op(self, kind: str, user: int, run: Any, processed: int = 0) -> Any:
        now = now_micros()
        view = self.views[user]
        if kind == "started":
            self.next_run += 1
            run = self.next_run
            current = RunView(
                run, view.tenant_id, user, "DELTA", "MAIL", "RUNNING", now, None, 100, 0, 0, 0,
                None, None,
            )  # fmt: skip
            view = replace(
                view, status="IN_PROGRESS", latest_sync_at=now, current_run_id=run,
                current_run=current,
            )  # fmt: skip
        elif kind == "progress":
            assert view.current_run is not None
            current = replace(view.current_run, items_processed=processed, changes=processed)
            view = replace(view, current_run=current)
        else:
            assert view.current_run is not None
            done = replace(view.current_run, state="SUCCEEDED", finished_at=now)
            view = replace(
                view, status="SYNCED", current_run_id=None, current_run=None,
                last_finished_run_id=done.id, last_finished_run=done,
            )  # fmt: skip
        self.views[user] = view = replace(view, version=view.version + 1)
        await self.publisher.publish([UserEvent(kind, view)])  # type: ignore[arg-type]
        return run


# -- the machine as users share it ------------------------------------------------------------

HOG = "while True: pass"


@contextmanager
def hogs(n: int) -> Iterator[list[int]]:
    """n CPU-bound processes beside the server for the block (--hog): a shared machine."""
    procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(n)]
    try:
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# -- analysis -------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def analyse(
    driver: DriverResult, received: dict[str, Any], pages: list[list[int] | None]
) -> dict[str, Any]:
    watchers: dict[int, list[int]] = defaultdict(list)
    everything = [c for c, p in enumerate(pages) if p is None]
    for c, page in enumerate(pages):
        for u in page or ():
            watchers[u].append(c)
    got = {(c, u, v): t for c, u, v, t in received["updates"]}
    versions: dict[tuple[int, int], list[int]] = defaultdict(list)
    for c, u, v, _t in received["updates"]:
        versions[(c, u)].append(v)
    misses: list[str] = []
    stats: dict[str, dict[str, Any]] = {}
    for group, kinds in (("start/finish", {"started", "finished"}), ("progress", {"progress"})):
        expected = delivered = 0
        latencies: list[float] = []
        for update in driver.updates:
            if update.kind not in kinds:
                continue
            for c in watchers.get(update.user, []) + everything:
                expected += 1
                t = got.get((c, update.user, update.version))
                if t is not None:
                    delivered += 1
                    latencies.append((t - update.sent) * 1000)
                elif group == "start/finish":
                    misses.append(
                        f"client {c} user {update.user}: {update.kind} v{update.version} "
                        f"missing, received {versions[(c, update.user)]}"
                    )
        stats[group] = {"expected": expected, "delivered": delivered, "latencies": latencies}
    all_latencies = stats["start/finish"]["latencies"] + stats["progress"]["latencies"]
    return {
        "lifecycle": stats["start/finish"],
        "misses": misses,
        "progress": stats["progress"],
        "p50_all": percentile(all_latencies, 50),
        "p99_all": percentile(all_latencies, 99),
        "metrics_messages": received["metrics"],
        "errors": received["errors"],
        "closed": received["closed"],
    }


SUMMARY: list[str] = []


def report_run(
    title: str, driver: DriverResult, target_rate: float, a: dict[str, Any], cpu: dict[str, float]
) -> None:
    life, prog = a["lifecycle"], a["progress"]
    lat = life["latencies"]
    p50, p99, worst = percentile(lat, 50), percentile(lat, 99), max(lat, default=float("nan"))
    ratio = life["delivered"] / life["expected"] if life["expected"] else float("nan")
    calls = [(u.done - u.sent) * 1000 for u in driver.updates]
    print(f"\n  {title}")
    print(f"    driver: {driver.name}")
    print(
        f"    updates: {len(driver.updates)} = {driver.rate:.0f}/s over {driver.duration:.0f} s "
        f"(target {target_rate:.0f}/s; last one done {driver.tail:.1f} s after); failed runs "
        f"{driver.failures}, runs not started (driver saturated) {driver.skipped}"
    )
    print(
        f"    one update's own call (mutation / transaction / publish) ms: "
        f"p50 {percentile(calls, 50):.1f}  p99 {percentile(calls, 99):.1f}"
    )
    print(f"    start/finish latency ms: p50 {p50:.1f}  p99 {p99:.1f}  max {worst:.1f}")
    print(f"    all updates latency ms:  p50 {a['p50_all']:.1f}  p99 {a['p99_all']:.1f}")
    print(
        f"    start/finish delivered/expected: {life['delivered']}/{life['expected']} = {ratio:.4f}"
    )
    for miss in a["misses"][:5]:
        print(f"      {miss}")
    if prog["expected"]:
        print(
            f"    progress delivered/expected: {prog['delivered']}/{prog['expected']} "
            f"= {prog['delivered'] / prog['expected']:.4f} (may be coalesced)"
        )
    print(
        f"    metrics messages received: {a['metrics_messages']}; CPU (share of one core): "
        + ", ".join(f"{k} {v:.0%}" for k, v in cpu.items())
    )
    if a["errors"] or a["closed"]:
        print(f"    client errors: {a['errors'][:3]} closed sockets: {a['closed']}")
    SUMMARY.append(
        f"{title:<42} {driver.name.split(' ')[0]:<9} {driver.rate:5.0f}/s  "
        f"p50 {p50:7.1f}  p99 {p99:7.1f} ms  start/finish {ratio:.4f}"
    )


# -- scenarios ------------------------------------------------------------------------------


async def health(server: Server) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        return dict((await http.get(f"{server.url}/healthz")).json())


LOSS_COUNTERS = (
    "events_published_total",
    "events_publish_retries_total",
    "events_publish_failures_total",
    "events_dropped_total",
    "events_coalesced_total",
    "events_delivered_total",
)


async def loss_counters(server: Server) -> dict[str, float]:
    """The server's own account of what it dropped, coalesced and sent (/metrics), so a
    shortfall at the clients can be told apart: dropped by the server, or not yet arrived when
    the clients stopped counting (the measurement window)."""
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(f"{server.url}/metrics")).text
    found: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        for name in LOSS_COUNTERS:
            if line.startswith(f"syncstatus_{name}"):
                key = name + line[len(f"syncstatus_{name}") :].rpartition(" ")[0]
                found[key] += float(line.rpartition(" ")[2])
    return found


@contextmanager
def server_on(fixture: Fixture, broadcast_url: str) -> Iterator[Server]:
    with run_server(
        fixture.database_url, env={"SYNCSTATUS_BROADCAST_URL": broadcast_url}
    ) as server:
        yield server


async def settle(clients: Clients, limit: float = 120.0) -> None:
    """Waits for stragglers: until the clients received nothing new for 5 s (2 s was shorter
    than a saturated server's longest stalls, so late arrivals could count as lost)."""
    deadline = time.monotonic() + limit
    last, quiet = -1, 0
    while time.monotonic() < deadline and quiet < 5:
        await asyncio.sleep(1)
        now = await asyncio.to_thread(clients.count)
        quiet = quiet + 1 if now == last else 0
        last = now


async def measure(
    server: Server,
    fixture: Fixture,
    clients: Clients,
    args: argparse.Namespace,
    broadcast_url: str,
    title: str,
) -> None:
    for run in args.runs.split(","):
        name, _, rate_text = run.partition(":")
        rate = float(rate_text or args.rate)
        if name != "http" and not broadcast_url.startswith("redis"):
            print(f"\n  {title}: {name} driver skipped (needs --broadcast redis)")
            continue
        driver: Driver
        if name == "http":
            driver = HttpDriver(fixture, server)
        elif name == "lifecycle":
            driver = LifecycleDriver(fixture, broadcast_url)
        else:
            driver = EventsDriver(fixture, broadcast_url)
        await asyncio.to_thread(clients.record)
        load0 = f"{os.getloadavg()[0]:.2f}"
        pids = {"server": [server.process.pid], "clients": clients.pids}
        cpu0 = {k: sum(cpu_seconds(p) for p in v) for k, v in pids.items()}
        own0, t0 = time.process_time(), time.monotonic()
        gc0 = (await health(server))["process"]["gc_collections"]
        losses0 = await loss_counters(server)
        with hogs(args.hog) as hog_pids:
            pids["hog"] = hog_pids
            cpu0["hog"] = sum(cpu_seconds(p) for p in hog_pids)
            async with driver:
                result = await driver.drive(rate, args.duration, args.max_in_flight)
            wall = time.monotonic() - t0
            after = (await health(server))["process"]
            gc1, pauses = after["gc_collections"], after["gc_longest_pause_ms"]
            cpu = {k: (sum(cpu_seconds(p) for p in v) - cpu0[k]) / wall for k, v in pids.items()}
            cpu["driver"] = (time.process_time() - own0) / wall
            await settle(clients)
            # Every message the dashboards received over the server's CPU time from the start
            # of the run until they stopped receiving: deliveries per second per server core.
            server_cpu = cpu_seconds(server.process.pid) - cpu0["server"]
            received = await asyncio.to_thread(clients.stop)
        if not args.hog:
            del cpu["hog"]
        deliveries = len(received["updates"]) + received["metrics"]
        print(
            f"\n  load average before/after: {load0} / {os.getloadavg()[0]:.2f}; "
            f"messages delivered {deliveries} in {server_cpu:.1f} s of server CPU: "
            f"{deliveries / max(server_cpu, 1e-9):,.0f} deliveries/s per server core"
        )
        report_run(
            f"{title} at {rate:.0f} updates/s" + (f", {args.hog} CPU hog(s)" if args.hog else ""),
            result,
            rate,
            analyse(result, received, clients.pages),
            cpu,
        )
        SUMMARY.append(
            f"{'':<42} {deliveries / max(server_cpu, 1e-9):,.0f} deliveries/s per server core, "
            f"load {load0} -> {os.getloadavg()[0]:.2f}"
        )
        losses1 = await loss_counters(server)
        print(
            "    server's own count during the run: "
            + ", ".join(
                f"{key} {losses1[key] - losses0.get(key, 0):.0f}" for key in sorted(losses1)
            )
        )
        collections = [b - a for a, b in zip(gc0, gc1, strict=True)]
        print(
            f"    server garbage collections per generation during the run: {collections}; "
            f"longest pause so far per generation (ms): {pauses}"
        )


async def dashboards(
    args: argparse.Namespace, fixture: Fixture, n: int, broadcast_url: str
) -> None:
    users = fixture.user_ids
    pages_total = len(users) // PAGE
    pages: list[list[int] | None] = [
        users[(i % pages_total) * PAGE : (i % pages_total) * PAGE + PAGE] for i in range(n)
    ]
    with server_on(fixture, broadcast_url) as server:
        warm = Clients(server, fixture.viewer, pages[:20])
        await asyncio.to_thread(warm.wait_ready)
        await asyncio.sleep(2)
        before = rss_kb(server.process.pid)
        began = time.monotonic()
        clients = Clients(server, fixture.viewer, pages)
        try:
            await asyncio.to_thread(clients.wait_ready)
            connected_in = time.monotonic() - began
            await asyncio.sleep(3)
            after = rss_kb(server.process.pid)
            stats = await health(server)
            broker = broadcast_url.split(":")[0]
            print(f"\n== {n} dashboards (a page of {PAGE} users + metrics each), broker {broker}")
            print(f"  connected and live in {connected_in:.1f} s; hub: {stats['subscriptions']}")
            per = (after - before) / n
            print(
                f"  server RSS {before / 1024:.0f} MB -> {after / 1024:.0f} MB idle: "
                f"{per:.1f} KB per subscriber (target <= 30)"
            )
            SUMMARY.append(f"{n} dashboards idle: {per:.1f} KB of server RSS per subscriber")
            await measure(
                server,
                fixture,
                clients,
                args,
                broadcast_url,
                f"{n} dashboards",
            )
        finally:
            clients.close()
            warm.close()


async def whole_tenant(
    args: argparse.Namespace, fixture: Fixture, n: int, broadcast_url: str
) -> None:
    pages: list[list[int] | None] = [None] * n
    with server_on(fixture, broadcast_url) as server:
        clients = Clients(server, fixture.viewer, pages)
        try:
            await asyncio.to_thread(clients.wait_ready)
            broker = broadcast_url.split(":")[0]
            print(f"\n== {n} whole-tenant subscribers (no userIds) + metrics, broker {broker}")
            await measure(
                server,
                fixture,
                clients,
                args,
                broadcast_url,
                f"{n} whole-tenant streams",
            )
        finally:
            clients.close()


def redis_up() -> bool:
    """redis-server can be started: the bench runs its own on a free port (PrivateRedis), so
    neither the machine's Redis nor anyone else's channels are touched."""
    return shutil.which("redis-server") is not None


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", default="1000,10000")
    parser.add_argument("--rate", type=float, default=500.0, help="for runs without a rate")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of updates")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument(
        "--runs",
        default="http:500,http:100,lifecycle:500,events:500",
        help="driver:rate pairs, run in this order for each scenario (events last: its events "
        "are not written to the database, so drivers after it would lag behind)",
    )
    parser.add_argument("--whole-tenant", type=int, default=10)
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=250,
        help="runs in progress at most; a driver that cannot keep up skips runs (reported)",
    )
    parser.add_argument(
        "--broadcast",
        choices=["memory", "redis"],
        default="redis" if redis_up() else "memory",
        help="redis: a redis-server of the bench's own on a free port",
    )
    parser.add_argument(
        "--hog",
        type=int,
        default=0,
        help="CPU-bound processes running beside the server during each run (a shared machine)",
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < max(int(s) for s in args.subscribers.split(",") if s) + 1000:
        print(f"open files limit {hard}: raise it (ulimit -Hn) for this many sockets")
    redis = PrivateRedis() if args.broadcast == "redis" else None
    if redis is not None:
        redis.start()
    broadcast_url = redis.url if redis is not None else "memory://"
    print(f"machine: {os.cpu_count()} cores; open files limit {hard}; broker {broadcast_url}")
    print(f"load average at start: {os.getloadavg()}; CPU hogs beside the server: {args.hog}")
    try:
        await _scenarios(args, broadcast_url)
    finally:
        if redis is not None:
            redis.kill()
    print("\n== summary (targets: p99 <= 100 ms at 10,000 dashboards and 500 updates/s with")
    print("   start/finish 1.0000; <= 30 KB per idle dashboard; headline: deliveries/s per core)")
    for line in SUMMARY:
        print("  " + line)


async def _scenarios(args: argparse.Namespace, broadcast_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-subs-") as folder:
        fixture = await prepare(f"sqlite+aiosqlite:///{folder}/bench.db", args.users)
        users = len(fixture.user_ids)
        print(f"tenant of {users} users on SQLite; runs {args.runs}")
        for n in (int(s) for s in args.subscribers.split(",") if s):
            await dashboards(args, fixture, n, broadcast_url)
        if args.whole_tenant:
            await whole_tenant(args, fixture, args.whole_tenant, broadcast_url)


if __name__ == "__main__":
    asyncio.run(main())
