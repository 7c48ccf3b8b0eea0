"""The floor under fan-out: one socket write per delivered message, and nothing else.

    .venv/bin/python bench/write_floor.py [--sockets 10000] [--seconds 10] [--bytes 900]

A bare uvloop server process (no ASGI, no WebSocket protocol, no GraphQL) holds N loopback
TCP connections from reader processes (2, reading and dropping) and writes one pre-built
message of --bytes (a dashboard's user update is ~900 bytes as a frame) to each socket in
turn, as fast as it can, for --seconds; a socket whose buffer holds over 64 KB is skipped.
Prints writes per second of the server's CPU time: what one core can deliver at best here
when every delivery is its own send() (on loopback the sender's system call also runs the
receiving side's TCP work), the ceiling for bench/subscriptions.py's deliveries per core.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import time

import uvloop

HIGH_WATER = 64 * 1024


def reader(port: int, count: int) -> None:
    async def main() -> None:
        async def one() -> None:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            while await _reader.read(65536):
                pass

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.gather(*tasks, return_exceptions=True)

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(main())


class Sink(asyncio.Protocol):
    def __init__(self, transports: list[asyncio.Transport]) -> None:
        self.transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)  # type: ignore[arg-type]


async def serve(args: argparse.Namespace) -> None:
    transports: list[asyncio.Transport] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Sink(transports), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    readers = []
    for n in range(2):
        count = args.sockets // 2 + (args.sockets % 2 if n == 0 else 0)
        proc = ctx.Process(target=reader, args=(port, count), daemon=True)
        proc.start()
        readers.append(proc)
    while len(transports) < args.sockets:  # noqa: ASYNC110 - connections arrive on their own
        await asyncio.sleep(0.1)
    message = b"x" * args.bytes
    writes = skipped = 0
    cpu0, t0 = time.process_time(), time.monotonic()
    deadline = t0 + args.seconds
    while time.monotonic() < deadline:
        for n, transport in enumerate(transports):
            if transport.get_write_buffer_size() > HIGH_WATER:
                skipped += 1
            else:
                transport.write(message)
                writes += 1
            if n % 100 == 99:
                await asyncio.sleep(0)  # let readers' acks and other callbacks run
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    print(
        f"{args.sockets} sockets, {args.bytes} B each write, {wall:.1f} s: {writes:,} writes "
        f"({skipped:,} skipped, buffer full); server CPU {cpu:.1f} s ({cpu / wall:.0%} of a "
        f"core): {writes / cpu:,.0f} writes per second of server CPU; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    for transport in transports:
        transport.abort()
    server.close()
    for proc in readers:
        proc.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bytes", type=int, default=900)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
