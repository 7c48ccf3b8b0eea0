"""The floor under issue 14's GraphQL/plain target: what graphql-core alone costs for the first
page, with no Strawberry, no resolvers of ours and no database.

    .venv/bin/python bench/graphql_floor.py [--db /tmp/q-1m.db] [--rounds 6] [--per-round 200]

The plain endpoint (bench/plain_endpoint.py) answers the page once; its `data` becomes the root
value of a bare graphql-core schema built from schema/schema.graphql, whose fields then resolve
with graphql-core's default resolver (a dict lookup). Executing bench/queries.py's PAGE on it
(parsed and validated once, as our document cache does) returns the same data: that is the
execution any GraphQL server on graphql-core pays on top of the plain endpoint's SQL and JSON.

Printed, CPU per request in this process (time.process_time, medians of the timed rounds):
- the plain endpoint's whole request (behind httpx's ASGI transport, as graphql_overhead.py);
- graphql-core's execute of the page over the plain endpoint's data, and json.dumps of it;
- our GraphQL endpoint's whole request, same transport;
and the ratio a GraphQL endpoint could reach if everything but graphql-core's execution cost
what the plain endpoint's request costs: (plain + execute) / plain.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from graphql import build_schema, execute, parse, validate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))

from graphql_overhead import apps, options  # noqa: E402
from queries import PAGE  # noqa: E402

SDL = ROOT / "schema" / "schema.graphql"


def _cpu_ms(fn: Any, per_round: int) -> float:
    started = time.process_time()
    for _ in range(per_round):
        fn()
    return (time.process_time() - started) * 1000 / per_round


async def _acpu_ms(fn: Any, per_round: int) -> float:
    started = time.process_time()
    for _ in range(per_round):
        await fn()
    return (time.process_time() - started) * 1000 / per_round


async def measure(db: Path, rounds: int, per_round: int) -> dict[str, list[float]]:
    body = {"query": PAGE, "variables": {"first": 10}}
    figures: dict[str, list[float]] = {
        "plain endpoint, whole request": [],
        "graphql-core execute alone": [],
        "json.dumps of the result": [],
        "our GraphQL endpoint, whole request": [],
    }
    async with apps(db, "graphql-floor") as (graphql, plain):
        data = (await plain.get("/page")).json()["data"]
        ours = (await graphql.post("/graphql", json=body)).json()
        if ours != {"data": data}:
            sys.exit("the plain endpoint and the GraphQL endpoint answer differently")

        schema = build_schema(SDL.read_text())
        document = parse(PAGE)
        if errors := validate(schema, document):
            sys.exit(f"the page's query does not validate on schema.graphql: {errors}")

        def run() -> Any:
            return execute(schema, document, data, variable_values={"first": 10})

        bare = run()
        if bare.errors or bare.data != data:
            sys.exit(f"graphql-core over the plain data answered otherwise: {bare.errors}")
        result = {"data": bare.data}

        for round_ in range(rounds):
            timed = {
                "plain endpoint, whole request": await _acpu_ms(
                    lambda: plain.get("/page"), per_round
                ),
                "graphql-core execute alone": _cpu_ms(run, per_round),
                "json.dumps of the result": _cpu_ms(lambda: json.dumps(result), per_round),
                "our GraphQL endpoint, whole request": await _acpu_ms(
                    lambda: graphql.post("/graphql", json=body), per_round
                ),
            }
            if round_:  # the first round warms up
                for name, value in timed.items():
                    figures[name].append(value)
    return figures


def main() -> None:
    given = options(__doc__ or "", per_round=200)
    figures = asyncio.run(measure(given.db, given.rounds, given.per_round))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    plain = medians["plain endpoint, whole request"]
    print(f"CPU per request in this process, median of {given.rounds - 1} rounds")
    for name, median in medians.items():
        print(f"  {name:38s} {median:6.3f} ms  {median / plain:4.2f}x plain")
    floor = (plain + medians["graphql-core execute alone"]) / plain
    ours = medians["our GraphQL endpoint, whole request"] / plain
    print(f"floor on graphql-core, (plain + execute) / plain: {floor:.2f}x; ours: {ours:.2f}x")


if __name__ == "__main__":
    main()
