"""Redis pub/sub backend for broadcaster that delivers reliably and survives Redis restarts.

broadcaster 0.3.1's RedisBackend wakes its listener before the first SUBSCRIBE completes; the
listener finds no channel, stops for good, and every message is lost. It also never reconnects.
Here a single reader task (the supervisor of _supervised.py) owns the subscribe connection: it
(re)connects with capped backoff, resubscribes every wanted channel, and sends PINGs when idle
so that a silently dead connection is noticed too. Publishing uses a separate client with a
short bounded retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from broadcaster import Event
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._common import DEFAULT_MAX_QUEUE, BroadcastUnavailable, redact_url
from ._supervised import SupervisedBackend

log = logging.getLogger(__name__)

# What a lost or unreachable broker looks like; anything else is a bug and propagates.
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisPubSubBackend(SupervisedBackend):
    """Reconnecting Redis pub/sub backend; use as ``Broadcast(backend=RedisPubSubBackend(url))``."""

    connection_errors = _CONNECTION_ERRORS

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        connect_timeout: float = 5.0,
        publish_timeout: float = 3.0,
        subscribe_timeout: float = 5.0,
        health_interval: float = 5.0,
        publish_connections: int = 16,
        publish_patience: float = 30.0,
    ) -> None:
        super().__init__(f"Redis pub/sub connection to {redact_url(url)}", max_queue=max_queue)
        self._url = url
        self._publish_connections = publish_connections
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._publish_patience = publish_patience
        self.publish_retries = 0  # publishes tried again after a timeout (Redis up)
        self.on_publish_retry: Callable[[], None] | None = None  # for the server's counter
        self._subscribe_timeout = subscribe_timeout
        self._health_interval = health_interval
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._sub_client: Redis | None = None
        self._pub_client: Redis | None = None
        self._pubsub: PubSub | None = None

    async def connect(self) -> None:
        """Open the connections; raise BroadcastUnavailable if Redis is unreachable at startup."""
        if self._supervisor is not None:
            raise RuntimeError("RedisPubSubBackend is already connected")
        # No retries inside redis-py on the subscribe side: the reader's own loop reconnects,
        # so there is exactly one place that rebuilds the connection and resubscribes.
        self._sub_client = Redis.from_url(
            self._url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2.0
        )
        # A blocking pool: concurrent publishes beyond its size wait for a connection
        # (within publish_timeout) instead of failing at once with "Too many connections",
        # which redis-py's default pool (100) does, losing events under a burst of commits.
        self._pub_client = Redis.from_pool(
            BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._publish_connections,
                timeout=self._publish_timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                socket_connect_timeout=1.0,
                socket_timeout=2.0,
            )
        )
        await self._start_supervisor(self._connect_timeout)

    async def disconnect(self) -> None:
        await self._stop_supervisor()
        await self._close_pubsub()
        for client in (self._sub_client, self._pub_client):
            if client is not None:
                await client.aclose()
        self._sub_client = self._pub_client = None

    async def subscribe(self, channel: str) -> None:
        """Subscribe, and return once Redis confirmed it so a following publish is delivered.

        Never raises for a broker outage (broadcaster's Broadcast.subscribe cannot recover from
        that): the channel is remembered and subscribed again when the reader reconnects.
        """
        async with self._lock:
            self._channels.add(channel)
            if self._pubsub is None:
                return
            confirmation = self._confirmations.setdefault(
                channel, asyncio.get_running_loop().create_future()
            )
            try:
                await self._pubsub.subscribe(channel)
            except _CONNECTION_ERRORS as exc:
                log.warning(
                    "SUBSCRIBE %s failed (%s); will subscribe after reconnect", channel, exc
                )
                return
        await asyncio.wait({confirmation}, timeout=self._subscribe_timeout)
        if not confirmation.done():
            log.warning(
                "Redis did not confirm SUBSCRIBE %s within %gs", channel, self._subscribe_timeout
            )

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            self._channels.discard(channel)
            self._confirmations.pop(channel, None)
            if self._pubsub is None:
                return
            try:
                await self._pubsub.unsubscribe(channel)
            except _CONNECTION_ERRORS as exc:
                # A new connection will not subscribe it again, so nothing is left to do.
                log.debug("UNSUBSCRIBE %s failed: %s", channel, exc)

    async def publish(self, channel: str, message: Any) -> None:
        """Publish; if Redis is down, raise BroadcastUnavailable within ``publish_timeout``.

        A publish that times out while the subscribe connection is up (Redis answers it) is
        tried again, for up to ``publish_patience`` in all: it was only queued behind others in
        a busy process. Given up, the event was lost without any subscriber learning it (their
        connections stay up, so nobody is told to refetch): under CPU load bench/subscriptions.py
        lost 25 of 1,000 events, starts and finishes among them, this way. A retry may publish
        an event twice (the first try reached Redis after all): subscribers drop a version they
        already have."""
        if self._pub_client is None:
            raise RuntimeError("RedisPubSubBackend.publish() called before connect()")
        deadline = asyncio.get_running_loop().time() + self._publish_patience
        while True:
            try:
                async with asyncio.timeout(self._publish_timeout):
                    await self._pub_client.publish(channel, message)
                return
            except TimeoutError as exc:
                if self.is_connected and asyncio.get_running_loop().time() < deadline:
                    self.publish_retries += 1
                    if self.on_publish_retry is not None:
                        self.on_publish_retry()
                    continue
                error: BaseException = exc
            except _CONNECTION_ERRORS as exc:
                error = exc
            raise BroadcastUnavailable(
                f"could not publish to Redis channel {channel!r} at {redact_url(self._url)}: "
                f"{str(error) or type(error).__name__}"
            ) from error

    async def _session(self) -> None:
        await self._open()
        await self._read()

    async def _end_session(self) -> None:
        await self._close_pubsub()

    async def _open(self) -> None:
        assert self._sub_client is not None
        pubsub = self._sub_client.pubsub()
        try:
            # Connect outside the lock so that subscribe() does not wait on a slow connect.
            await pubsub.connect()
            async with self._lock:
                if self._channels:
                    await pubsub.subscribe(*self._channels)
                self._pubsub = pubsub
                self._mark_connected()
        except BaseException:
            await pubsub.aclose()
            raise

    async def _read(self) -> None:
        """Read until the connection fails; PING when idle and give up if no reply arrives."""
        pubsub = self._pubsub
        assert pubsub is not None
        loop = asyncio.get_running_loop()
        last_seen = loop.time()
        ping_sent: float | None = None
        poll = min(1.0, self._health_interval)
        while True:
            message = await pubsub.get_message(timeout=poll)
            now = loop.time()
            if message is not None:
                last_seen, ping_sent = now, None
                self._handle(message)
            elif ping_sent is not None:
                if now - ping_sent > self._health_interval:
                    raise RedisConnectionError(
                        f"no reply to PING within {self._health_interval:g}s"
                    )
            elif now - last_seen >= self._health_interval:
                async with self._lock:
                    await pubsub.ping()
                ping_sent = now

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            channel = message["channel"].decode("utf-8", errors="replace")
            data = message["data"].decode("utf-8", errors="replace")
            self._queue.put_nowait(Event(channel=channel, message=data))
        elif kind == "subscribe":
            channel = message["channel"].decode("utf-8", errors="replace")
            confirmation = self._confirmations.pop(channel, None)
            if confirmation is not None and not confirmation.done():
                confirmation.set_result(None)

    async def _close_pubsub(self) -> None:
        async with self._lock:
            pubsub, self._pubsub = self._pubsub, None
            if pubsub is not None:
                try:
                    await pubsub.aclose()
                except _CONNECTION_ERRORS as exc:
                    log.debug("closing Redis pub/sub connection: %s", exc)
