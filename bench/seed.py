"""Seed time: `syncstatus seed --users N` into a fresh database, this code beside another
revision's, alternating, so machine noise hits both alike.

    .venv/bin/python bench/seed.py [--users N] [--rounds R] [--before REV] [--postgres [ADMIN_URL]]

Each round seeds a fresh SQLite file (or a throw-away PostgreSQL database next to ADMIN_URL,
default postgresql://postgres@127.0.0.1:5432/postgres) with each code in turn, as a
subprocess, and records its wall time and CPU time (user + system of the seeding process: on
PostgreSQL the server's work is not in it). Prints the median of each, per code, and the load
average. --before REV (e.g. "$(git merge-base HEAD main)"; repeatable) unpacks that revision's
code with `git archive` beside the databases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throwaway import admin

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def checkout(rev: str, target: Path) -> Path:
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def seed_once(code: Path, database_url: str, users: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `syncstatus seed` process."""
    env = {
        **os.environ,
        "SYNCSTATUS_DATABASE_URL": database_url,
        "SYNCSTATUS_LOG_LEVEL": "warning",
        "PYTHONPATH": str(code),
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "seed", "--tenant", "Bench", "--users", str(users)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"seed failed ({code}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--before", action="append", default=[], help="also time this revision's code (repeatable)"
    )
    parser.add_argument(
        "--postgres", nargs="?", const=DEFAULT_POSTGRES, default=None, metavar="ADMIN_URL"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="syncstatus-seed-bench-") as tmp:
        folder = Path(tmp)
        codes = [
            (f"before ({rev[:12]})", checkout(rev, folder / str(n)))
            for n, rev in enumerate(args.before)
        ]
        codes.append(("this code", ROOT))
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in codes}
        loads = []
        for round_no in range(args.rounds):
            for name, code in codes:
                if args.postgres:
                    db = f"syncstatus_seed_bench_{random.randrange(10**9)}"
                    base = args.postgres.rsplit("/", 1)[0]
                    asyncio.run(admin(args.postgres, f'CREATE DATABASE "{db}"'))
                    url = f"{base}/{db}"
                else:
                    db = str(folder / f"seed-{round_no}-{len(times[name])}.db")
                    url = f"sqlite+aiosqlite:///{db}"
                try:
                    wall, cpu = seed_once(code, url, args.users)
                finally:
                    if args.postgres:
                        asyncio.run(admin(args.postgres, f'DROP DATABASE IF EXISTS "{db}"'))
                    else:
                        for suffix in ("", "-wal", "-shm", ".key"):
                            Path(f"{db}{suffix}").unlink(missing_ok=True)
                times[name].append((wall, cpu))
                loads.append(os.getloadavg()[0])
                print(
                    f"round {round_no + 1} {name}: wall {wall:.1f} s, CPU {cpu:.1f} s", flush=True
                )
    engine = "PostgreSQL" if args.postgres else "SQLite"
    print()
    print(
        f"seed of {args.users:,} users on {engine}, {args.rounds} rounds, {os.cpu_count()} cores, "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    for name, found in times.items():
        wall = statistics.median(w for w, _ in found)
        cpu = statistics.median(c for _, c in found)
        print(f"  {name:<26} median wall {wall:7.1f} s   CPU {cpu:7.1f} s")


if __name__ == "__main__":
    main()
