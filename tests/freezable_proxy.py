"""A TCP proxy whose forwarding can be frozen, like a silently dead network: no reset, no
refusal, the packets just stop (what timeouts, not error handling, must end)."""

from __future__ import annotations

import asyncio
import threading


class FreezableProxy:
    """TCP proxy to a real server whose forwarding can be frozen, like a silently dead network."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # connection handlers and pumps
        self._closed = False
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        # Every task ends here, before a ThreadedProxy closes its loop: a pump left pending
        # would run its `finally` at garbage collection, on a closed loop.
        while self._tasks:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._tasks.add(handler)
        handler.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        await self._flowing.wait()
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.add(up_writer)
        if self._closed:
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()


class ThreadedProxy:
    """A FreezableProxy on its own event loop in a thread, for tests whose own thread blocks
    (a server subprocess started with run_server, sync HTTP clients)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._proxy = FreezableProxy(target_host, target_port)
        self._call(self._proxy.start())
        self.port = self._proxy.port

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    def freeze(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.freeze)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._proxy.thaw)

    def close(self) -> None:
        self.thaw()
        self._call(self._proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
