"""SQLite's writer thread: one synchronous pysqlite connection, used only from one dedicated
thread, that runs whole write transactions (see Database.run_write).

Through aiosqlite a transaction hops to its connection's thread at least once per statement
(app.store.sqlite_trips), and under load every hop waits for an event-loop iteration while the
transaction holds SQLite's one write lock. Here a transaction is one hop, and holds the lock
only for its own statements.

The rare ORM writers keep an aiosqlite connection (Database.write). They first take a turn in
this thread's queue, so a process's writes queue in one first-come line instead of polling
each other's lock with busy_timeout (a busy writer thread would starve a poller).

WAL checkpoints run on a thread and connection of their own: SQLite's automatic checkpoint
(every 1,000 WAL pages) runs inside the COMMIT that crosses the threshold, while the write lock
is held; at a million users requestSyncs' transactions took 350-550 ms instead of ~30 ms when
one of their commits did it. Here the writer connection never checkpoints, and after a commit
(at most every CHECKPOINT_SECONDS) a PASSIVE checkpoint, which waits for no reader or writer
and blocks none, copies the WAL back into the database file beside the writes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event

log = logging.getLogger(__name__)
T = TypeVar("T")
# Most one checkpoint per this many seconds of writes: each copies what the WAL gained since.
CHECKPOINT_SECONDS = 0.5
# The turn only orders writers; SQLite's lock still guards them. A turn held longer than this
# (a block never exited) stops holding the thread rather than stall every write for good.
TURN_LIMIT_SECONDS = 60.0


class SQLiteWriter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        # Opened and used in the thread only. Held between transactions: a pool checkout and
        # return per transaction cost ~20 us, a tenth of a run update.
        self._conn: Connection | None = None
        # Told how long each transaction waited for the thread, in seconds (a metric).
        self.on_wait: Callable[[float], None] | None = None
        event.listen(engine, "connect", _no_autocheckpoint)
        self._path = engine.url.database or ""
        self._in_memory = self._path in ("", ":memory:")  # no file, so no WAL to checkpoint
        self._checkpointer = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sqlite-checkpoint"
        )
        self._checkpoint_conn: sqlite3.Connection | None = None  # the checkpointer thread's
        self._checkpointing = False  # one queued or running at a time
        self._next_checkpoint = 0.0
        self.checkpoints = 0  # completed

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """fn in one transaction on the writer thread: committed when it returns, rolled back
        when it raises."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, fn, time.perf_counter())

    def _transaction(self, fn: Callable[[Connection], T], queued: float) -> T:
        if self.on_wait is not None:
            self.on_wait(time.perf_counter() - queued)
        if self._conn is None:
            self._conn = self.engine.connect()
        with self._conn.begin():
            result = fn(self._conn)
        self._after_commit()
        return result

    def _after_commit(self) -> None:
        now = time.perf_counter()
        if self._checkpointing or now < self._next_checkpoint or self._in_memory:
            return
        self._checkpointing = True
        self._next_checkpoint = now + CHECKPOINT_SECONDS
        self._checkpointer.submit(self._checkpoint)

    def _run_checkpoint(self, mode: str) -> bool:
        """On the checkpointer's thread; False: busy (a TRUNCATE that readers kept waiting)."""
        if self._checkpoint_conn is None:
            self._checkpoint_conn = sqlite3.connect(self._path, isolation_level=None)
        busy, _, _ = self._checkpoint_conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return not busy

    def _checkpoint(self) -> None:
        try:
            self._run_checkpoint("PASSIVE")
            self.checkpoints += 1
        except sqlite3.Error:
            log.warning("WAL checkpoint failed", exc_info=True)
        finally:
            self._checkpointing = False

    async def truncate_wal(self) -> bool:
        """Copies the whole WAL into the file and truncates it (after a bulk load, which grew it
        to the load's size), waiting up to the connection's timeout for readers. On the
        checkpointer's thread, after the checkpoint in flight: a second checkpoint meanwhile is
        answered busy at once, without waiting. False: readers kept it from completing. An
        in-memory database has no WAL: True."""
        if self._in_memory:
            return True
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._checkpointer, self._run_checkpoint, "TRUNCATE")

    def _close_checkpointer(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self.engine.dispose()
        # After the checkpoint in flight, if any (the executor runs one job at a time).
        self._checkpointer.submit(self._close_checkpointer).result()
        self._checkpointer.shutdown(wait=False)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Holds the writer thread (idle) for the block, once the writes queued before ran."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        done = threading.Event()
        self._thread.submit(_hold, loop, ready, done)
        try:
            await ready
            yield
        finally:
            done.set()

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)  # idle now, so its thread ends at once


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _hold(
    loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None], done: threading.Event
) -> None:
    loop.call_soon_threadsafe(_resolve, ready)
    done.wait(TURN_LIMIT_SECONDS)


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # its waiter may have been cancelled
        ready.set_result(None)
