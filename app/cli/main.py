"""The `syncstatus` command. Every command honours SYNCSTATUS_DATABASE_URL.

Each command imports what it needs when it runs (the ORM and the store for `token` and `audit`,
uvicorn and the whole app for `serve`, an HTTP client for `worker`): this module imports only
the standard library and light modules of ours, so a command starts in the time its own work
takes (tests/api_tests/test_cli.py runs dozens of them).

Exit status, the same for every command: 0 done; 1 it ran, but what it was asked for does not
exist (no such tenant or token); 2 it did not run: bad arguments or settings, the database
unreachable, or its schema behind (`syncstatus db upgrade`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.demo.simulation import MAX_IN_FLIGHT
from app.domain.roles import ROLES, Role
from app.domain.validation import MAX_TOKEN_LIFETIME_DAYS
from app.ops.logs import configure as configure_logging
from app.ops.logs import uvicorn_log_config
from app.web.settings import Settings, is_port

WORKER_HEALTHCHECK_SECONDS = 30
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client in each worker

DEMO_TENANT = "Demo"
DEMO_USERS = 250
DEMO_TOKEN_NAME = "demo page"
WS_MAX_MESSAGE_BYTES = 64 * 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncstatus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API and the page")
    serve.add_argument("--host")
    serve.add_argument("--port", type=_port_arg)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes (more than 1 needs PostgreSQL and a redis:// or postgres:// broker)",
    )
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    token = commands.add_parser("token", help="API tokens")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new token; prints it last, once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=[r.lower() for r in ROLES])
    create.add_argument("--name", default="cli")
    create.add_argument(
        "--expires-in-days", type=int, help=f"1..{MAX_TOKEN_LIFETIME_DAYS}; default: never expires"
    )
    create.add_argument(
        "--create-tenant", action="store_true", help="create the tenant if it does not exist"
    )
    listing = actions.add_parser("list", help="the tenant's tokens (never their secrets)")
    listing.add_argument("--tenant", required=True)
    revoke = actions.add_parser("revoke", help="revoke a token (its id from `token list`)")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("id")
    audit = commands.add_parser("audit", help="print a tenant's audit log, newest first")
    audit.add_argument("--tenant", required=True)
    audit.add_argument("--since", help="ISO 8601 time, inclusive")
    audit.add_argument("--action", help="e.g. policy.update")
    seed = commands.add_parser("seed", help="fill a tenant with realistic data")
    seed.add_argument("--tenant", required=True)
    seed.add_argument("--users", type=int, required=True)
    prune = commands.add_parser("prune", help="delete finished runs past the retention period")
    prune.add_argument(
        "--days", type=int, help="keep this many days (default: SYNCSTATUS_RETENTION_DAYS)"
    )
    demo = commands.add_parser("demo", help="seeded demo with moving syncs")
    demo.add_argument("--host")
    demo.add_argument("--port", type=_port_arg)
    demo.add_argument("--users", type=int, default=DEMO_USERS)
    demo.add_argument("--no-simulator", action="store_true", help="keep the data still")
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="time factor of the simulated runs: 2 runs twice as fast",
    )
    worker = commands.add_parser("worker", help="simulated sync worker over GraphQL")
    worker.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000/graphql")
    worker.add_argument("--token", required=True, help="a WORKER token")
    worker.add_argument(
        "--concurrency", type=int, default=MAX_IN_FLIGHT, help="runs in flight at most"
    )
    worker.add_argument(
        "--speed", type=float, default=1.0, help="time factor: 2 runs twice as fast"
    )
    return parser


def workers_problem(settings: Settings, workers: int) -> str | None:
    """Why this configuration cannot run `workers` processes, if it cannot."""
    if workers < 1:
        return "--workers must be at least 1"
    if workers == 1:
        return None
    from app.store.engine import is_sqlite

    if is_sqlite(settings.database_url):
        return (
            "--workers above 1 needs PostgreSQL (SYNCSTATUS_DATABASE_URL=postgresql://...): "
            "SQLite has one writer per file"
        )
    scheme = settings.broadcast_url.split("://", 1)[0].lower()
    if scheme not in ("redis", "rediss", "postgres", "postgresql", "postgresql+asyncpg"):
        return (
            "--workers above 1 needs a broker every process shares: "
            "SYNCSTATUS_BROADCAST_URL=redis://... or postgres://..."
        )
    return None


def _refuse(message: str, log_format: str, logger: str = "syncstatus") -> int:
    """One line saying why a command will not run, and its exit status (2). With JSON logs,
    a JSON line like every other."""
    if log_format == "json":
        logging.getLogger(logger).error("%s", message)
    else:
        print(message, file=sys.stderr)
    return 2


def _port_arg(raw: str) -> int:
    port = int(raw)
    if not is_port(port):
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, not {raw}")
    return port


def _config_problem(settings: Settings) -> str | None:
    """What is wrong with settings checked elsewhere than Settings.from_env (the webhook
    settings, the server key, the browser origins, the database URL's form; the broker URL:
    _broker_problem), found before uvicorn starts: inside it each was a traceback."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    from app.store.engine import is_sqlite, normalize_url
    from app.web.browser_security import allowed_origins, frame_ancestors
    from app.webhooks.secret_box import SecretBox
    from app.webhooks.settings import WebhookSettings

    try:
        WebhookSettings.from_env()
        if key := os.environ.get("SYNCSTATUS_SECRET_KEY"):
            SecretBox(key)
        allowed_origins(settings.cors_origins)
        frame_ancestors(settings.frame_ancestors)
    except ValueError as error:
        return str(error).splitlines()[0]
    try:
        sqlite = is_sqlite(settings.database_url)
    except ArgumentError:
        return (
            "SYNCSTATUS_DATABASE_URL is not a database URL (sqlite:///path or "
            "postgresql://user@host/db)"
        )
    if sqlite:
        path = make_url(normalize_url(settings.database_url)).database
        folder = Path(path).parent if path and path != ":memory:" else None
        if folder is not None and not folder.is_dir():
            return f"SYNCSTATUS_DATABASE_URL: no folder {str(folder)!r} for the SQLite file"
    return None


def _broker_problem(settings: Settings) -> str | None:
    """What is wrong with the broker URL, or why the broker cannot be reached now (None: it
    can, or it is memory://): inside uvicorn's start either was a traceback."""
    from app.events.broker import BroadcastUnavailable, create_broadcast

    try:
        broadcast = create_broadcast(settings.broadcast_url)  # connects nothing yet
    except ValueError as error:
        return str(error).splitlines()[0]
    if settings.broadcast_url.startswith("memory:"):
        return None

    async def check() -> None:
        async with broadcast:
            pass

    from app.ops.error_line import describe

    try:
        asyncio.run(check())
    except (BroadcastUnavailable, OSError) as error:
        reason = describe(error)
        return f"cannot reach the broker ({reason}): start it, or check SYNCSTATUS_BROADCAST_URL"
    return None


def _check_schema(settings: Settings) -> str | None:
    from app.store.engine import is_sqlite, open_database
    from app.store.schema_version import schema_problem

    if is_sqlite(settings.database_url):
        return None  # migrates itself at start

    async def check() -> str | None:
        db = open_database(settings.database_url, timeout=settings.database_timeout_seconds)
        try:
            return await schema_problem(db)
        finally:
            await db.dispose()

    from app.ops.error_line import describe

    try:
        return asyncio.run(check())
    except Exception as error:
        reason = describe(error)
        return f"cannot read the database schema's version: {reason}"


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `serve` runs uvicorn (bench/idle_memory.py runs the same in its own process)."""
    from app.web.ws_protocol import AbortableWebSocketProtocol

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": uvicorn_log_config(settings.log_level, settings.log_format),
        "access_log": False,  # app/ops/request_log.py writes one line per request instead
        # uvicorn's WebSocket protocol, with a way to drop a peer that stopped reading.
        "ws": AbortableWebSocketProtocol,
        "ws_max_size": WS_MAX_MESSAGE_BYTES,
        "ws_ping_interval": 20,
        "ws_ping_timeout": 20,
        # permessage-deflate keeps a zlib context per socket (~45 KB of the ~115 KB an idle
        # dashboard connection cost); our messages are small, so it saves little bandwidth.
        "ws_per_message_deflate": False,
        # On SIGTERM: stop accepting, let requests finish (WebSockets close with 1012).
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }


def serve(settings: Settings, workers: int = 1, **app_options: object) -> int:
    problem = (
        _config_problem(settings)
        or workers_problem(settings, workers)
        or _broker_problem(settings)
        or _check_schema(settings)
    )
    if problem is not None:
        return _refuse(f"syncstatus serve: {problem}", settings.log_format, "syncstatus.serve")
    import uvicorn

    options = uvicorn_options(settings)
    if workers == 1:
        from app.web.asgi import create_app

        uvicorn.run(create_app(settings, **app_options), **options)  # type: ignore[arg-type]
        return 0
    # Each worker builds its app from the environment: hand it this command's host and port.
    os.environ["SYNCSTATUS_HOST"], os.environ["SYNCSTATUS_PORT"] = settings.host, str(settings.port)
    with tempfile.TemporaryDirectory(prefix="syncstatus-metrics-") as metrics_dir:
        # Fresh for every start: the workers' metric files of a previous run must not count.
        os.environ[MULTIPROC_ENV] = metrics_dir
        uvicorn.run(
            "app.web.asgi:create_app_from_env",
            factory=True,
            workers=workers,
            # A worker answers the supervisor's ping only once its imports are done: on a busy
            # machine that takes longer than uvicorn's 5 s, and it would kill it in a loop.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            **options,
        )
    return 0


async def _prune(settings: Settings, days: int) -> None:
    from app.ops.retention import cutoff_for, prune
    from app.store.engine import open_database

    if days <= 0:
        print("retention is 0 days: keeping everything")
        return
    db = open_database(settings.database_url, timeout=settings.database_timeout_seconds)
    try:
        started = time.perf_counter()
        result = await prune(db, cutoff_for(days))
        print(
            f"pruned {result.runs} runs, {result.failed_items} failed items, "
            f"{result.audit_events} audit events and {result.webhook_deliveries} finished "
            f"webhook deliveries older than {days} days in {result.batches} batches, "
            f"{time.perf_counter() - started:.1f} s"
        )
    finally:
        await db.dispose()


async def _seed(settings: Settings, tenant: str, users: int, *, only_if_empty: bool) -> None:
    from app.auth.tokens import tenant_by_name
    from app.demo.seed import seed
    from app.store.engine import open_database
    from app.store.schema_version import upgrade_if_behind

    # The load's index builds take longer than the timeout at a million users (it ended the
    # seed with "cannot reach the database"); a silent server still ends it at connect.
    db = open_database(settings.database_url, timeout=settings.database_timeout_seconds, bulk=True)
    try:
        await upgrade_if_behind(db)
        if only_if_empty:
            async with db.read() as session:
                row = await tenant_by_name(session, tenant, create=False)
            if row is not None:
                return
        started = time.perf_counter()
        await seed(db, tenant, users)
        print(
            f"seeded {users} users into tenant {tenant!r} in {time.perf_counter() - started:.1f} s"
        )
    finally:
        await db.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        base = Settings.from_env()
    except ValueError as error:
        # The log format is read with the rest, so logging is not set up yet.
        log_format = os.environ.get("SYNCSTATUS_LOG_FORMAT", "text")
        if log_format == "json":
            configure_logging("info", "json")
        return _refuse(f"syncstatus: {error}", log_format)
    configure_logging(base.log_level, base.log_format)
    settings = dataclasses.replace(
        base,
        host=getattr(args, "host", None) or base.host,
        port=getattr(args, "port", None) or base.port,
    )
    try:
        return _run(args, settings)
    except Exception as error:
        from app.ops.error_line import describe
        from app.ops.outage import is_outage

        if not is_outage(error):
            raise
        # An unreachable or silent database (SYNCSTATUS_DATABASE_TIMEOUT_SECONDS): one line,
        # not a traceback.
        reason = describe(error)
        return _refuse(
            f"syncstatus: cannot reach the database ({reason}): start it, or check "
            "SYNCSTATUS_DATABASE_URL",
            settings.log_format,
        )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return serve(settings, args.workers)
    elif args.command == "prune":
        days = settings.retention_days if args.days is None else args.days
        if days < 0:
            return _refuse("--days must not be negative", settings.log_format)
        asyncio.run(_prune(settings, days))
    elif args.command == "db":
        from app.store.migrate import upgrade
        from app.store.schema_version import ahead_of_code

        ahead = asyncio.run(ahead_of_code(settings.database_url, settings.database_timeout_seconds))
        if ahead is not None:
            print(ahead)
            return 0
        upgrade(settings.database_url)
        print("database is up to date")
    elif args.command == "token":
        from app.cli import tokens

        return tokens.run(settings, args)
    elif args.command == "audit":
        from app.cli.audit import print_audit

        return asyncio.run(print_audit(settings, args.tenant, args.since, args.action))
    elif args.command == "seed":
        if args.users < 0:
            return _refuse("--users must not be negative", settings.log_format)
        asyncio.run(_seed(settings, args.tenant, args.users, only_if_empty=False))
    elif args.command == "demo":
        from app.cli import tokens

        if args.speed <= 0:
            return _refuse("--speed must be positive", settings.log_format)
        asyncio.run(_seed(settings, DEMO_TENANT, args.users, only_if_empty=True))
        # The previous start's token is revoked: restarts do not pile up usable tokens.
        viewer = tokens.replace_token(settings, DEMO_TENANT, Role.VIEWER, DEMO_TOKEN_NAME)
        token = asyncio.run(viewer)
        print(
            f"\n  Sync Status demo: http://{settings.host}:{settings.port}/#token={token}\n"
            f"  viewer token: {token}\n",
            flush=True,
        )
        return serve(settings, simulate=not args.no_simulator, simulation_speed=args.speed)
    elif args.command == "worker":
        from app.demo.worker import run_worker

        if args.concurrency < 1 or args.speed <= 0:
            return _refuse(
                "--concurrency must be at least 1 and --speed positive", settings.log_format
            )
        try:
            return asyncio.run(
                run_worker(args.url, args.token, max_in_flight=args.concurrency, speed=args.speed)
            )
        except KeyboardInterrupt:  # before the worker took over the signal
            return 130
    return 0
