"""Broadcast layer: a broadcaster.Broadcast for the configured broker URL.

Redis and PostgreSQL use backends of ours (see redis_pubsub and postgres_notify) that deliver
reliably, reconnect and resubscribe by themselves, and keep bounded queues; ReliableBroadcast
fixes broadcaster's concurrent-subscribe race and bounds each subscriber's queue.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from broadcaster import Broadcast

from ._broadcast import ReliableBroadcast
from ._common import BroadcastUnavailable

__all__ = ["BroadcastUnavailable", "ReliableBroadcast", "create_broadcast", "max_message_bytes"]

_SUPPORTED = "memory://, redis://, rediss://, postgres://, postgresql:// (optionally +asyncpg)"


def create_broadcast(url: str) -> Broadcast:
    """Build a not yet connected Broadcast (a ReliableBroadcast) for ``url``.

    ``memory://`` only reaches subscribers of the same Broadcast object (one process).
    Raises ValueError for any other scheme.
    """
    scheme, _, driver = urlsplit(url).scheme.lower().partition("+")
    if scheme == "memory" and not driver:
        return ReliableBroadcast(url)
    if scheme in ("redis", "rediss") and not driver:
        from .redis_pubsub import RedisPubSubBackend

        return ReliableBroadcast(backend=RedisPubSubBackend(url))
    if scheme in ("postgres", "postgresql"):
        from .postgres_notify import PostgresNotifyBackend

        # asyncpg takes a plain DSN; drop a SQLAlchemy-style "+asyncpg" driver suffix.
        dsn = "postgresql" + url[url.index(":") :]
        return ReliableBroadcast(backend=PostgresNotifyBackend(dsn))
    raise ValueError(f"unsupported broadcast URL scheme {urlsplit(url).scheme!r}; use {_SUPPORTED}")


def max_message_bytes(broadcast: Broadcast) -> int | None:
    """The largest message the broker carries (PostgreSQL NOTIFY: below 8000 bytes), if limited."""
    limit = getattr(getattr(broadcast, "backend", None), "max_message_bytes", None)
    return limit if isinstance(limit, int) else None
