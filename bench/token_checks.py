"""Token checks: time to refuse unknown, near-miss, revoked and expired tokens, beside a valid
token's uncached check, so a timing oracle would show as a gap between the refusals.

    .venv/bin/python bench/token_checks.py [--tokens N] [--runs R] [--warmup W] [--postgres [URL]]

A fresh SQLite file (or a throwaway PostgreSQL database) with N tokens (default 10,000) over ten
tenants, a tenth of them revoked and a tenth expired. Each round checks one token of every kind,
in a random order, through app.auth.tokens.Authenticator (the cache is emptied before the valid
one, so every check reads the database): R timed rounds (default 2,000) after W warm-up rounds
(100).
Kinds: unknown (a random token of the right shape), near miss (a valid token with its last
character changed), revoked, expired, valid (uncached). Prints p50 / p99 / mean in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import throwaway  # noqa: E402

from app.auth.tokens import Authenticator, hash_token, new_token  # noqa: E402
from app.domain.errors import Unauthenticated  # noqa: E402
from app.domain.timeutil import now_micros  # noqa: E402
from app.store.engine import open_database  # noqa: E402
from app.store.migrate import upgrade  # noqa: E402
from app.store.models import ApiToken, Tenant  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
KINDS = ("unknown", "near miss", "revoked", "expired", "valid (uncached)")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def populate(url: str, count: int) -> dict[str, list[str]]:
    await asyncio.to_thread(upgrade, url)
    db = open_database(url)
    now = now_micros()
    kinds: dict[str, list[str]] = {"valid": [], "revoked": [], "expired": []}
    try:
        async with db.write() as session:
            tenants = [Tenant(name=f"bench-{i}", created_at=now) for i in range(10)]
            session.add_all(tenants)
            await session.flush()
            for i in range(count):
                token = new_token()
                kind = "revoked" if i % 10 == 0 else "expired" if i % 10 == 1 else "valid"
                kinds[kind].append(token)
                session.add(
                    ApiToken(
                        tenant_id=tenants[i % 10].id,
                        name=f"t{i}",
                        role="VIEWER",
                        token_hash=hash_token(token),
                        created_at=now,
                        revoked_at=now if kind == "revoked" else None,
                        expires_at=now - 1 if kind == "expired" else None,
                    )
                )
    finally:
        await db.dispose()
    return kinds


def near_miss(token: str) -> str:
    last = "A" if token[-1] != "A" else "B"
    return token[:-1] + last


async def check(auth: Authenticator, token: str, valid: bool) -> float:
    if valid:
        auth.forget_all()
    started = time.perf_counter()
    try:
        await auth.authenticate(token)
        ok = True
    except Unauthenticated:
        ok = False
    elapsed = (time.perf_counter() - started) * 1e6
    assert ok == valid, token
    return elapsed


async def measure(url: str, count: int, runs: int, warmup: int) -> dict[str, list[float]]:
    kinds = await populate(url, count)
    db = open_database(url)
    auth = Authenticator(db)
    rng = random.Random(7)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    try:
        for round_no in range(warmup + runs):
            tokens = {
                "unknown": ("sst_" + secrets.token_urlsafe(32), False),
                "near miss": (near_miss(rng.choice(kinds["valid"])), False),
                "revoked": (rng.choice(kinds["revoked"]), False),
                "expired": (rng.choice(kinds["expired"]), False),
                "valid (uncached)": (rng.choice(kinds["valid"]), True),
            }
            order = list(KINDS)
            rng.shuffle(order)
            for kind in order:
                token, valid = tokens[kind]
                elapsed = await check(auth, token, valid)
                if round_no >= warmup:
                    times[kind].append(elapsed)
    finally:
        await auth.close()
        await db.dispose()
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"  {'kind':<18} {'p50 us':>8} {'p99 us':>8} {'mean us':>8}")
    for kind, values in times.items():
        print(
            f"  {kind:<18} {pct(values, 50):8.0f} {pct(values, 99):8.0f} "
            f"{statistics.fmean(values):8.0f}"
        )


async def on_postgres(admin_url: str, count: int, runs: int, warmup: int) -> dict[str, list[float]]:
    async with throwaway.database(admin_url, "syncstatus_bench") as url:
        return await measure(url, count, runs, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/tokens.db"
        times = asyncio.run(measure(url, args.tokens, args.runs, args.warmup))
    report(f"SQLite, {args.tokens} tokens, {args.runs} rounds", times)
    if args.postgres:
        times = asyncio.run(on_postgres(args.postgres, args.tokens, args.runs, args.warmup))
        report(f"PostgreSQL, {args.tokens} tokens, {args.runs} rounds", times)


if __name__ == "__main__":
    main()
