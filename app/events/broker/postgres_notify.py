"""PostgreSQL LISTEN/NOTIFY backend for broadcaster that survives connection loss.

broadcaster's own PostgresBackend publishes on its single LISTEN connection (concurrent
publishes fail with "another operation is in progress") and never reconnects. Here one
dedicated connection LISTENs, supervised by a task that reconnects and re-LISTENs after a
server restart or a terminated backend; publishing goes through a small separate pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from broadcaster import Event

from ._common import DEFAULT_MAX_QUEUE, Backoff, BroadcastUnavailable, redact_url
from ._supervised import SupervisedBackend

log = logging.getLogger(__name__)

# PostgreSQL rejects NOTIFY payloads of 8000 bytes or more; keep a margin below that.
MAX_PAYLOAD_BYTES = 7_900
# Channel names are identifiers: LISTEN silently truncates longer ones, pg_notify rejects them.
MAX_CHANNEL_BYTES = 63

# What a lost or unreachable server looks like; other errors are bugs and propagate.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, server starting up
    # A connection whose server died mid-operation can stay waiting for the end of that
    # operation's error ("cannot switch to state 11; another operation (2) is in progress"
    # on the LISTEN connection's next health check, seen when a broker was killed): unusable.
    asyncpg.InternalClientError,
)


def _check_channel(channel: str) -> None:
    size = len(channel.encode("utf-8"))
    if not 0 < size <= MAX_CHANNEL_BYTES:
        raise ValueError(
            f"PostgreSQL channel name must be 1..{MAX_CHANNEL_BYTES} bytes, got {size}: {channel!r}"
        )


class PostgresNotifyBackend(SupervisedBackend):
    """Reconnecting LISTEN/NOTIFY backend; use as ``Broadcast(backend=PostgresNotifyBackend(url))``.

    ``url`` must be a plain ``postgresql://`` DSN (no SQLAlchemy ``+driver``).
    """

    connection_errors = _CONNECTION_ERRORS

    # The largest payload publish() takes; callers send bigger events as references.
    max_message_bytes = MAX_PAYLOAD_BYTES

    def __init__(
        self,
        url: str,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        connect_timeout: float = 5.0,
        publish_timeout: float = 3.0,
        health_interval: float = 5.0,
        publish_pool_size: int = 4,
        publish_patience: float = 30.0,
        application_name: str = "syncstatus-broadcast",
    ) -> None:
        super().__init__(f"PostgreSQL LISTEN connection to {redact_url(url)}", max_queue=max_queue)
        self._url = url
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._publish_patience = publish_patience
        self.publish_retries = 0  # NOTIFYs tried again after a timeout (PostgreSQL up)
        self.on_publish_retry: Callable[[], None] | None = None  # for the server's counter
        self._health_interval = health_interval
        self._publish_pool_size = publish_pool_size
        # Shown in pg_stat_activity as "<name>-listen" / "<name>-publish".
        self._application_name = application_name
        # asyncpg allows one operation at a time per connection: LISTEN/UNLISTEN and the health
        # check take turns under the base's lock, which also guards swapping the connection.
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None

    @property
    def listen_server_pid(self) -> int | None:
        """Server process id of the LISTEN connection (for diagnostics), if connected."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def connect(self) -> None:
        """Open the connections; raise BroadcastUnavailable if PostgreSQL is unreachable."""
        if self._supervisor is not None:
            raise RuntimeError("PostgresNotifyBackend is already connected")
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                # No floor: asyncpg restores one by retrying in the background and logs a
                # traceback each time while the server is down; publish() connects on demand.
                min_size=0,
                max_size=self._publish_pool_size,
                timeout=self._connect_timeout,
                server_settings={"application_name": f"{self._application_name}-publish"},
            )
        except _CONNECTION_ERRORS as exc:
            raise BroadcastUnavailable(
                f"PostgreSQL at {redact_url(self._url)} not reachable: {exc}"
            ) from exc
        await self._start_supervisor(self._connect_timeout)

    async def disconnect(self) -> None:
        await self._stop_supervisor()
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_connection(conn)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(2.0):
                    await pool.close()
            except (*_CONNECTION_ERRORS, TimeoutError):
                pool.terminate()

    async def subscribe(self, channel: str) -> None:
        """LISTEN, returning once the server has acknowledged it.

        Never raises for an outage (broadcaster's Broadcast.subscribe cannot recover from that):
        the channel is remembered and LISTENed again when the connection is re-established.
        """
        _check_channel(channel)
        await self._listen(channel, listening=True)

    async def unsubscribe(self, channel: str) -> None:
        await self._listen(channel, listening=False)

    async def _listen(self, channel: str, *, listening: bool) -> None:
        """LISTEN or UNLISTEN on the current connection (the channel set is what a reconnect
        LISTENs to). Bounded: on a silently dead network either would wait for TCP to give up
        (minutes), holding this lock, so the health check could not run, and
        ReliableBroadcast's, so no other channel could be subscribed either."""
        async with self._lock:
            if listening:
                self._channels.add(channel)
            else:
                self._channels.discard(channel)
            if self._conn is None:
                return
            try:
                async with asyncio.timeout(self._health_interval):
                    if listening:
                        await self._conn.add_listener(channel, self._on_notification)
                    else:
                        await self._conn.remove_listener(channel, self._on_notification)
            except _CONNECTION_ERRORS as exc:
                # Ended here, not left to the health check: a connection whose LISTEN failed
                # may still look alive, and this channel would then stay deaf. The supervisor
                # reconnects and LISTENs every channel (an UNLISTENed one no more).
                verb = "LISTEN" if listening else "UNLISTEN"
                log.warning("%s %s failed (%s); the connection is renewed", verb, channel, exc)
                self._conn.terminate()

    async def publish(self, channel: str, message: Any) -> None:
        """NOTIFY through the publish pool, retrying briefly over dead pooled connections.

        Raises ValueError for payloads over MAX_PAYLOAD_BYTES (publish an id and let clients
        refetch instead) and BroadcastUnavailable when the server stays unreachable. A NOTIFY
        that only waited past publish_timeout while LISTEN is up is tried again, for up to
        publish_patience in all (see RedisPubSubBackend.publish).
        """
        _check_channel(channel)
        if not isinstance(message, str):
            raise TypeError(f"NOTIFY payload must be str, got {type(message).__name__}")
        size = len(message.encode("utf-8"))
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"NOTIFY payload for channel {channel!r} is {size} bytes; PostgreSQL caps it "
                f"below 8000 bytes and this backend allows at most {MAX_PAYLOAD_BYTES}"
            )
        if self._pool is None:
            raise RuntimeError("PostgresNotifyBackend.publish() called before connect()")
        error: BaseException | None = None
        deadline = asyncio.get_running_loop().time() + self._publish_patience
        while error is None:
            try:
                async with asyncio.timeout(self._publish_timeout):
                    backoff = Backoff(initial=0.05, cap=0.5)
                    while True:
                        try:
                            await self._pool.execute("SELECT pg_notify($1, $2)", channel, message)
                            return
                        except _CONNECTION_ERRORS as exc:
                            # A pooled connection may have died with the server; the pool
                            # replaces it on the next acquire, so one more try usually succeeds.
                            error = exc
                        await asyncio.sleep(backoff.next_delay())
            except TimeoutError as exc:
                # Timed out without an error while LISTEN is up: only queued behind others in a
                # busy process (as in RedisPubSubBackend.publish); dropped, the event would be
                # lost without any subscriber learning it.
                up = error is None and self.is_connected
                if up and asyncio.get_running_loop().time() < deadline:
                    self.publish_retries += 1
                    if self.on_publish_retry is not None:
                        self.on_publish_retry()
                    continue
                error = error or exc
        raise BroadcastUnavailable(
            f"could not NOTIFY channel {channel!r} at {redact_url(self._url)}: "
            f"{str(error) or 'timed out'}"
        ) from error

    def _on_notification(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self._queue.put_nowait(Event(channel=channel, message=payload))

    async def _session(self) -> None:
        conn, lost = await self._open()
        await self._watch(conn, lost)

    async def _end_session(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _open(self) -> tuple[asyncpg.Connection, asyncio.Event]:
        # Connect outside the lock so that subscribe() does not wait on a slow connect.
        conn = await asyncpg.connect(
            self._url,
            timeout=self._connect_timeout,
            server_settings={"application_name": f"{self._application_name}-listen"},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            async with self._lock, asyncio.timeout(self._connect_timeout):  # as subscribe()
                for channel in self._channels:
                    await conn.add_listener(channel, self._on_notification)
                self._conn = conn
                self._mark_connected()
        except BaseException:
            conn.terminate()
            raise
        return conn, lost

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is lost; a periodic query catches silent network loss."""
        while not lost.is_set():
            try:
                async with asyncio.timeout(self._health_interval):
                    await lost.wait()
            except TimeoutError:
                async with self._lock:
                    await conn.fetchval("SELECT 1", timeout=self._health_interval)


async def _close_connection(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=2.0)
    except _CONNECTION_ERRORS:
        conn.terminate()
