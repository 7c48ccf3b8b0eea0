"""A broker of the test's own that it can take away: a private redis-server or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.private_postgres import private_postgres
from tests.private_redis import started_private_redis


@dataclass
class Broker:
    url: str
    kill: Callable[[], None]  # at once, as a crash does
    start: Callable[[], None]


@contextmanager
def private_broker(kind: str, *, sigkill: bool) -> Iterator[Broker]:
    """ "redis" or "postgres". PostgreSQL's kill is SIGKILL to every process of the cluster with
    ``sigkill``, else pg_ctl's immediate stop (both drop every connection at once)."""
    if kind == "redis":
        with started_private_redis() as redis:
            yield Broker(redis.url, redis.kill, redis.start)
    else:
        with private_postgres() as pg:
            yield Broker(pg.url, pg.kill if sigkill else pg.stop, pg.start)
