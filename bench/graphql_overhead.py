"""Where GraphQL's cost over the plain endpoint lies: the CPU per request of the first page with
ever fewer fields, against bench/plain_endpoint.py, both apps in this process.

    .venv/bin/python bench/graphql_overhead.py [--db /tmp/q-1m.db] [--rounds 6] [--per-round 60]

The database is one that bench/queries.py seeded (its tenant "Bench"). Both apps run with their
lifespans (asgi-lifespan) behind httpx's ASGI transport, so a request's figure is this process's
CPU time (time.process_time: the app, the driver and the httpx client, not SQLite's own thread
time, which is the same for both) from send to body read. Variants run round-robin; the first
round is warm-up; medians in ms.

If selecting only the users' ids costs nearly as much as the whole page, the cost is GraphQL's
fixed part per request (Strawberry's view and extension runner, graphql-core's execution
context, the resolver's views), not the fields.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))

import plain_endpoint  # noqa: E402
from queries import PAGE  # noqa: E402

from app.cli import tokens  # noqa: E402
from app.web.asgi import create_app  # noqa: E402
from app.web.settings import Settings  # noqa: E402

Client = httpx.AsyncClient
ROW = "policy { id name active } currentRun { progress }"
VARIANTS = {
    "the first page (bench/queries.py)": PAGE,
    "no policy, run, version": PAGE.replace(ROW, "").replace(" version", ""),
    "ids and totalCount only": "{ syncUsers(first: 10) { edges { node { id } } totalCount } }",
    "totalCount only": "{ syncUsers(first: 10) { totalCount } }",
    "viewer { role } (one key read)": "{ viewer { role } }",
}


@asynccontextmanager
async def apps(
    db: Path, token_name: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Clients of our app and of the plain endpoint over the same file, both lifespans run,
    behind httpx's ASGI transport with a viewer token of the tenant "Bench": (ours, plain)."""
    url = f"sqlite+aiosqlite:///{db}"
    settings = Settings(database_url=url, log_level="warning", rate_limit=0)
    token = await tokens.create(settings, "Bench", "viewer", token_name)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        LifespanManager(create_app(settings)) as graphql_app,
        LifespanManager(plain_endpoint.create_app(settings)) as plain_app,
    ):
        yield (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=graphql_app.app),
                base_url="http://b",
                headers=headers,
            ),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=plain_app.app),
                base_url="http://b",
                headers=headers,
            ),
        )


def options(doc: str, per_round: int) -> argparse.Namespace:
    """--db (a file bench/queries.py seeded), --rounds, --per-round."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/q-1m.db"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=per_round)
    given = parser.parse_args()
    if not given.db.exists():
        sys.exit(f"{given.db}: seed it first (bench/queries.py --db {given.db})")
    return given


async def measure(db: Path, rounds: int, per_round: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in [*VARIANTS, "plain endpoint"]}
    async with apps(db, "graphql-overhead") as (graphql, plain):
        for round_ in range(rounds):
            for name in figures:
                for _ in range(per_round):
                    started = time.process_time()
                    if name == "plain endpoint":
                        response = await plain.get("/page")
                    else:
                        query = VARIANTS[name]
                        body = {"query": query, "variables": {"first": 10} if "$" in query else {}}
                        response = await graphql.post("/graphql", json=body)
                    took = time.process_time() - started
                    assert response.status_code == 200 and "errors" not in response.json()
                    if round_:
                        figures[name].append(took * 1000)
    return figures


def main() -> None:
    given = options(__doc__ or "", per_round=60)
    figures = asyncio.run(measure(given.db, given.rounds, given.per_round))
    plain = statistics.median(figures["plain endpoint"])
    print(f"CPU per request in this process, median of {len(figures['plain endpoint'])} each")
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"  {name:36s} {median:6.3f} ms  {median / plain:4.2f}x plain")


if __name__ == "__main__":
    main()
