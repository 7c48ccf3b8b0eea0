"""Read-side latency at scale: p50/p99 of the Sync Status page's queries on a seeded SQLite file.

    .venv/bin/python bench/queries.py [--users N] [--runs R] [--db PATH] [--reseed]
    .venv/bin/python bench/queries.py --postgres [ADMIN_URL] [--keep | --reuse NAME] [--users N]

Seeds N users (default 1,000,000) into one tenant with `syncstatus seed` (timed; an existing
seeded file is reused unless --reseed), starts `syncstatus serve` and bench/plain_endpoint.py as
uvicorn subprocesses, and times every query over HTTP on loopback: metrics, the first page with
no filter, each filter alone, all filters combined, an email search, a page 1,000 pages deep,
each with totalCount. The plain Starlette endpoint serves the unfiltered first page over the same
SQL, and the GraphQL/plain ratio is measured in the same run.

Latency is the server's: the `Server-Timing: app;dur=` header of each response (request arrival
in the ASGI app to response start: routing, auth, GraphQL, SQL, JSON). The client's round trip on
one persistent loopback connection (httpx) is shown beside it; it adds HTTP parsing and sockets.
Queries run round-robin (each round runs every query once), so machine noise hits all alike.

--postgres runs the same queries on PostgreSQL (admin URL default
postgresql://postgres@127.0.0.1:5432/postgres): a throw-away database is created beside it,
seeded by `syncstatus seed` (which migrates it), VACUUM ANALYZEd, and dropped at the end unless
--keep; --reuse NAME times an already seeded database (kept by an earlier --keep) and keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent
TENANT = "Bench"
# Issue 14: every page query p99 <= 20 ms (searches and all filters combined included),
# GraphQL/plain first page <= 1.5x at p50; metrics as before.
PAGE_TARGET_MS = 20.0
METRICS_TARGET_MS = 10.0
RATIO_TARGET = 1.5
# PostgreSQL (issue 14): the production path's own targets.
PG_PAGE_TARGET_MS = 20.0
PG_METRICS_TARGET_MS = 5.0
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"

METRICS = """query Metrics { syncMetrics {
  usersWithActivePolicy changesLast24h syncsInProgress failedSyncs totalUsers asOf } }"""
# What the Sync Status table needs for a page of users.
PAGE = """query Page($filter: SyncUserFilter, $orderBy: SyncUserOrder, $first: Int,
                $after: String) {
  syncUsers(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {
    edges { cursor node { id email latestSyncAt status version
                          policy { id name active } currentRun { progress } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    totalCount } }"""
# The Sync Status page's own query (app/web/static/js/queries.js): every field of a row and the
# panel.
RUN = """id kind service state startedAt finishedAt durationSeconds itemsTotal itemsProcessed
  itemsFailed changes progress errorCode errorMessage"""
FULL_PAGE = f"""query SyncUsers($filter: SyncUserFilter, $first: Int, $after: String) {{
  syncUsers(filter: $filter, first: $first, after: $after) {{
    totalCount
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ cursor node {{ id email destinationEmail version status latestSyncAt
      nextScheduledSyncAt unresolvedFailureCount policy {{ id name active }}
      currentRun {{ {RUN} }} lastFinishedRun {{ {RUN} }} }} }} }} }}"""
WALK = """query Walk($after: String) { syncUsers(first: 100, after: $after) {
  pageInfo { hasNextPage endCursor } } }"""
POLICIES = "{ policies(first: 100) { edges { node { id name active } } } }"
# Failure triage (issue 12): the page's "Top failure reasons" and its 24 h / 7 day chart.
TRIAGE_TARGET_MS = 20.0
REASONS = """query Reasons { failureReasons(first: 10) {
  errorCode sampleMessage userCount lastSeenAt } }"""
TRENDS = """query Trends($since: DateTime!) { syncTrends(since: $since, bucket: HOUR) {
  at changes runsStarted runsSucceeded runsCompletedWithWarning runsFailed } }"""


@dataclass
class Case:
    name: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    target: float = PAGE_TARGET_MS
    server: list[float] = field(default_factory=list)
    client: list[float] = field(default_factory=list)
    total_count: int | None = None


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"syncstatus {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def seeded_users(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as conn:
        try:
            row = conn.execute(
                "SELECT count(*) FROM sync_users u JOIN tenants t ON t.id = u.tenant_id "
                "WHERE t.name = ?",
                (TENANT,),
            ).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


SEEDED_SQL = (
    "SELECT count(*) FROM sync_users u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = $1"
)


async def pg(url: str, *statements: str, fetch: str | None = None, args: tuple = ()) -> Any:
    """Run statements on one connection; return the first value of `fetch`."""
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
        return await conn.fetchval(fetch, *args) if fetch is not None else None
    finally:
        await conn.close()


async def pg_seeded(url: str) -> int:
    try:
        return int(await pg(url, fetch=SEEDED_SQL, args=(TENANT,)) or 0)
    except asyncpg.PostgresError:
        return 0


def db_size(db_path: Path) -> int:
    return sum(
        p.stat().st_size
        for p in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"))
        if p.exists()
    )


@contextmanager
def process(args: list[str], env: dict[str, str], port: int, ready_path: str) -> Iterator[None]:
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in finally)
        prefix="syncstatus-bench-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{args} exited:\n{Path(log.name).read_text()[-3000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{args} did not start") from None
                time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)


def server_ms(response: httpx.Response) -> float:
    for part in response.headers.get("server-timing", "").split(","):
        name, _, params = part.strip().partition(";")
        if name == "app" and params.startswith("dur="):
            return float(params[4:])
    raise SystemExit("no Server-Timing header in the response")


class GraphQL:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.client = httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=60)

    def post(self, query: str, variables: dict[str, Any]) -> httpx.Response:
        response = self.client.post(self.url, json={"query": query, "variables": variables})
        response.raise_for_status()
        return response

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.post(query, variables).json()
        if body.get("errors"):
            raise SystemExit(f"GraphQL errors: {body['errors']}")
        return body["data"]


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def build_cases(api: GraphQL) -> list[Case]:
    policies = {e["node"]["name"]: e["node"]["id"] for e in api.data(POLICIES)["policies"]["edges"]}
    finance = policies["Finance"]
    now = datetime.now(UTC)
    last_day = {"latestSyncFrom": iso(now - timedelta(days=1)), "latestSyncTo": iso(now)}
    week = {"latestSyncFrom": iso(now - timedelta(days=7)), "latestSyncTo": iso(now)}
    # 1,000 pages deep: walk 10,000 users in pages of 100, then ask for 10 more.
    after = None
    for _ in range(100):
        info = api.data(WALK, after=after)["syncUsers"]["pageInfo"]
        after = info["endCursor"]

    def page(name: str, **variables: Any) -> Case:
        return Case(name, PAGE, {"first": 10, **variables})

    return [
        Case("metrics", METRICS, target=METRICS_TARGET_MS),
        page("first page, no filter"),
        page("status FAILED", filter={"status": "FAILED"}),
        page("policy Finance", filter={"policyId": finance}),
        page("latest sync in last 24 h", filter=last_day),
        page("latest sync in last 7 days", filter=week),
        page("email search 'garcia'", filter={"emailContains": "garcia"}),
        page("email search 'maria.chen12'", filter={"emailContains": "maria.chen12"}),
        page(
            "all combined",
            filter={"status": "FAILED", "policyId": finance, "emailContains": "garcia", **week},
        ),
        page("page 1,000 deep (after cursor)", after=after),
        page("order LATEST_SYNC_DESC", orderBy="LATEST_SYNC_DESC"),
        Case("first page, the page's full query", FULL_PAGE, {"first": 10}),
        page(
            "LATEST_SYNC_DESC, FAILED, 24 h",
            orderBy="LATEST_SYNC_DESC",
            filter={"status": "FAILED", **last_day},
        ),
        *triage_cases(api, finance, week),
    ]


def triage_cases(api: GraphQL, policy_id: str, week: dict[str, str]) -> list[Case]:
    code = api.data(REASONS)["failureReasons"][0]["errorCode"]

    def page(name: str, **variables: Any) -> Case:
        return Case(name, PAGE, {"first": 10, **variables}, target=TRIAGE_TARGET_MS)

    since = iso(datetime.now(UTC) - timedelta(days=7))
    return [
        Case("failureReasons", REASONS, target=TRIAGE_TARGET_MS),
        page(f"errorCode {code}", filter={"errorCode": code}),
        page("errorCode, LATEST_SYNC_DESC", filter={"errorCode": code}, orderBy="LATEST_SYNC_DESC"),
        page("errorCode + policy Finance", filter={"errorCode": code, "policyId": policy_id}),
        page(
            "errorCode + 7 days + 'garcia'",
            filter={"errorCode": code, "emailContains": "garcia", **week},
        ),
        Case("syncTrends, 7 days of hours", TRENDS, {"since": since}, target=TRIAGE_TARGET_MS),
    ]


def measure(
    cases: list[Case], plain: Case, api: GraphQL, plain_client: httpx.Client, runs: int, warmup: int
) -> None:
    for round_no in range(warmup + runs):
        for case in cases:
            started = time.perf_counter()
            response = api.post(case.query, case.variables)
            client_ms = (time.perf_counter() - started) * 1000
            body = response.json()
            if body.get("errors"):
                raise SystemExit(f"{case.name}: {body['errors']}")
            if round_no >= warmup:
                case.server.append(server_ms(response))
                case.client.append(client_ms)
            if case.total_count is None and "syncUsers" in body["data"]:
                case.total_count = body["data"]["syncUsers"]["totalCount"]
        started = time.perf_counter()
        response = plain_client.get("/page")
        client_ms = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        if round_no >= warmup:
            plain.server.append(server_ms(response))
            plain.client.append(client_ms)


def report(
    cases: list[Case], plain: Case, seed_line: str, size: int, users: int, engine: str
) -> None:
    print()
    print(
        f"syncstatus read benchmark: {users:,} users in one tenant, {engine}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    print(seed_line)
    print(f"database size: {size / 1e6:,.0f} MB")
    print(
        f"runs per query: {len(plain.server)} after warm-up; server = Server-Timing app;dur, "
        "client = round trip on a persistent loopback connection (httpx)"
    )
    print()
    header = (
        f"{'query':<34} {'rows':>9} {'server p50':>11} {'p99':>8} "
        f"{'client p50':>11} {'p99':>8} {'target p99':>11}"
    )
    print(header)
    print("-" * len(header))
    for case in [*cases, plain]:
        p99 = pct(case.server, 99)
        verdict = "" if case.target <= 0 else ("ok" if p99 <= case.target else "MISSED")
        target = f"<= {case.target:.0f} ms {verdict}" if case.target > 0 else ""
        rows = f"{case.total_count:,}" if case.total_count is not None else ""
        print(
            f"{case.name:<34} {rows:>9} {pct(case.server, 50):>8.2f} ms {p99:>5.2f} ms "
            f"{pct(case.client, 50):>8.2f} ms {pct(case.client, 99):>5.2f} ms {target}"
        )
    first = next(c for c in cases if c.name == "first page, no filter")
    ratio50 = pct(first.server, 50) / pct(plain.server, 50)
    ratio99 = pct(first.server, 99) / pct(plain.server, 99)
    verdict = "ok" if ratio50 <= RATIO_TARGET else "MISSED"
    print()
    print(
        f"GraphQL/plain, first page (server time): p50 {ratio50:.2f}x, p99 {ratio99:.2f}x "
        f"(target <= {RATIO_TARGET:g}x: {verdict}); round trip p50 "
        f"{pct(first.client, 50) / pct(plain.client, 50):.2f}x"
    )


def seed_sqlite(args: argparse.Namespace, env: dict[str, str]) -> tuple[str, Path]:
    db_path: Path = args.db or Path(tempfile.gettempdir()) / f"syncstatus-bench-{args.users}.db"
    db_path = db_path.resolve()
    env["SYNCSTATUS_DATABASE_URL"] = f"sqlite+aiosqlite:///{db_path}"
    if args.reseed or seeded_users(db_path) != args.users:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        print(f"seeding {args.users:,} users into {db_path} ...", flush=True)
        started = time.perf_counter()
        cli(env, "seed", "--tenant", TENANT, "--users", str(args.users))
        seed_line = (
            f"seed: `syncstatus seed --users {args.users}` took "
            f"{time.perf_counter() - started:.1f} s (process wall time)"
        )
    else:
        seed_line = f"seed: reused {db_path} (run with --reseed to time the seed)"
    return seed_line, db_path


def seed_postgres(args: argparse.Namespace, env: dict[str, str], url: str) -> str:
    """Seed the (new or reused) database at url; VACUUM ANALYZE it as production would be."""
    env["SYNCSTATUS_DATABASE_URL"] = url
    if args.reuse:
        found = asyncio.run(pg_seeded(url))
        if found != args.users:
            raise SystemExit(f"{args.reuse} holds {found:,} users, not --users {args.users:,}")
        return f"seed: reused database {args.reuse}"
    print(f"seeding {args.users:,} users into {url} ...", flush=True)
    started = time.perf_counter()
    cli(env, "seed", "--tenant", TENANT, "--users", str(args.users))
    seeded = time.perf_counter() - started
    started = time.perf_counter()
    asyncio.run(pg(url, "VACUUM ANALYZE"))
    return (
        f"seed: `syncstatus seed --users {args.users}` took {seeded:.1f} s (process wall time), "
        f"VACUUM ANALYZE {time.perf_counter() - started:.1f} s"
    )


def run(args: argparse.Namespace, env: dict[str, str], seed_line: str) -> list[Case] | None:
    token = (
        cli(env, "token", "create", "--tenant", TENANT, "--role", "viewer", "--name", "bench")
        .strip()
        .splitlines()[-1]
    )
    port, plain_port = free_port(), free_port()
    with ExitStack() as stack:
        stack.enter_context(
            process(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
                env,
                port,
                "/healthz",
            )
        )
        stack.enter_context(
            process(
                [
                    sys.executable,
                    str(ROOT / "bench" / "plain_endpoint.py"),
                    "--port",
                    str(plain_port),
                ],
                env,
                plain_port,
                "/page",
            )
        )
        api = GraphQL(f"http://127.0.0.1:{port}/graphql", token)
        plain_client = stack.enter_context(
            httpx.Client(
                base_url=f"http://127.0.0.1:{plain_port}",
                headers={"authorization": f"Bearer {token}"},
                timeout=60,
            )
        )
        cases = build_cases(api)
        if args.postgres:
            for case in cases:
                case.target = min(
                    case.target,
                    PG_METRICS_TARGET_MS if case.name == "metrics" else PG_PAGE_TARGET_MS,
                )
        first = next(c for c in cases if c.name == "first page, no filter")
        expected = api.post(first.query, first.variables).json()
        if plain_client.get("/page").json() != expected:
            raise SystemExit("the plain endpoint does not answer what GraphQL answers")
        plain = Case("plain Starlette JSON, first page", "", target=0)
        print(
            f"timing {len(cases)} queries + the plain endpoint, {args.warmup} warm-up and "
            f"{args.runs} timed rounds ...",
            flush=True,
        )
        measure(cases, plain, api, plain_client, args.runs, args.warmup)
    if args.postgres:
        url = env["SYNCSTATUS_DATABASE_URL"]
        size = asyncio.run(pg(url, fetch="SELECT pg_database_size(current_database())"))
        engine = f"PostgreSQL {asyncio.run(pg(url, fetch='SHOW server_version'))}"
    else:
        size = db_size(Path(env["SYNCSTATUS_DATABASE_URL"].split("///", 1)[1]))
        engine = f"SQLite {sqlite3.sqlite_version}"
    report(cases, plain, seed_line, size, args.users, engine)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--db", type=Path, help="SQLite file (default: in the temp folder)")
    parser.add_argument("--reseed", action="store_true", help="seed anew even if the file exists")
    parser.add_argument(
        "--postgres", nargs="?", const=DEFAULT_POSTGRES, default=None, metavar="ADMIN_URL"
    )
    parser.add_argument("--keep", action="store_true", help="PostgreSQL: keep the new database")
    parser.add_argument("--reuse", metavar="NAME", help="PostgreSQL: time this seeded database")
    parser.add_argument("--name", help="PostgreSQL: the new database's name (default: random)")
    args = parser.parse_args()
    env = {
        **os.environ,
        "SYNCSTATUS_LOG_LEVEL": "warning",
        "SYNCSTATUS_RATE_LIMIT": "0",  # latency, not the per-token budget
        "PYTHONPATH": str(ROOT),
    }
    if not args.postgres:
        seed_line, _ = seed_sqlite(args, env)
        print(seed_line, flush=True)
        run(args, env, seed_line)
        return
    admin = make_url(args.postgres).set(drivername="postgresql")
    name = args.reuse or args.name or f"syncstatus_bench_{args.users}_{random.randrange(10**6)}"
    url = admin.set(database=name).render_as_string(hide_password=False)
    admin_url = admin.render_as_string(hide_password=False)
    if not args.reuse:
        asyncio.run(pg(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        seed_line = seed_postgres(args, env, url)
        print(seed_line, flush=True)
        run(args, env, seed_line)
    finally:
        if args.keep or args.reuse:
            print(f"kept database {name} (reuse with --postgres --reuse {name})")
        else:
            asyncio.run(pg(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
