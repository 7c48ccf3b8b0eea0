"""The `syncstatus` command. Every command honours SYNCSTATUS_DATABASE_URL."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence

import uvicorn

from app import token_commands
from app.audit_cli import print_audit
from app.auth import tenant_by_name
from app.db.engine import open_database
from app.migrate import upgrade
from app.settings import Settings
from app.simulation import MAX_IN_FLIGHT

DEMO_TENANT = "Demo"
DEMO_USERS = 250
DEMO_TOKEN_NAME = "demo page"
WS_MAX_MESSAGE_BYTES = 64 * 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncstatus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API and the page")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    token_commands.add_parser(commands)
    audit = commands.add_parser("audit", help="print a tenant's audit log, newest first")
    audit.add_argument("--tenant", required=True)
    audit.add_argument("--since", help="ISO 8601 time, inclusive")
    audit.add_argument("--action", help="e.g. policy.update")
    seed = commands.add_parser("seed", help="fill a tenant with realistic data")
    seed.add_argument("--tenant", required=True)
    seed.add_argument("--users", type=int, required=True)
    demo = commands.add_parser("demo", help="seeded demo with moving syncs")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument("--users", type=int, default=DEMO_USERS)
    demo.add_argument("--no-simulator", action="store_true", help="keep the data still")
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


def serve(settings: Settings, **app_options: object) -> None:
    from app.asgi import create_app

    uvicorn.run(
        create_app(settings, **app_options),  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=WS_MAX_MESSAGE_BYTES,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # permessage-deflate keeps a zlib context per socket (~45 KB of the ~115 KB an idle
        # dashboard connection cost); our messages are small, so it saves little bandwidth.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
    )


async def _seed(settings: Settings, tenant: str, users: int, *, only_if_empty: bool) -> None:
    from app.seed import seed

    await asyncio.to_thread(upgrade, settings.database_url)
    db = open_database(settings.database_url)
    try:
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
    base = Settings.from_env()
    logging.basicConfig(level=base.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    settings = dataclasses.replace(  # every other setting as the environment says
        base,
        host=getattr(args, "host", None) or base.host,
        port=getattr(args, "port", None) or base.port,
    )
    if args.command == "serve":
        serve(settings)
    elif args.command == "db":
        upgrade(settings.database_url)
        print("database is up to date")
    elif args.command == "token":
        return token_commands.run(settings, args)
    elif args.command == "audit":
        return asyncio.run(print_audit(settings.database_url, args.tenant, args.since, args.action))
    elif args.command == "seed":
        if args.users < 0:
            print("--users must not be negative", file=sys.stderr)
            return 2
        asyncio.run(_seed(settings, args.tenant, args.users, only_if_empty=False))
    elif args.command == "demo":
        asyncio.run(_seed(settings, DEMO_TENANT, args.users, only_if_empty=True))
        # The previous start's token is revoked: restarts do not pile up usable tokens.
        token = asyncio.run(
            token_commands.replace_token(settings, DEMO_TENANT, "VIEWER", DEMO_TOKEN_NAME)
        )
        print(
            f"\n  Sync Status demo: http://{settings.host}:{settings.port}/#token={token}\n"
            f"  viewer token: {token}\n",
            flush=True,
        )
        serve(settings, simulate=not args.no_simulator)
    elif args.command == "worker":
        from app.worker import run_worker

        if args.concurrency < 1 or args.speed <= 0:
            print("--concurrency must be at least 1 and --speed positive", file=sys.stderr)
            return 2
        try:
            return asyncio.run(
                run_worker(args.url, args.token, max_in_flight=args.concurrency, speed=args.speed)
            )
        except KeyboardInterrupt:  # before the worker took over the signal
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
