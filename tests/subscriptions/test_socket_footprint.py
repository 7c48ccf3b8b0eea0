"""What an open dashboard's socket keeps alive on the server, looked at in the server's own
heap: uvicorn and the app in this process, a real client over a real socket. Every object a
socket keeps is walked by every full garbage collection (~0.6 us each; ~90 ms at 1,000
dashboards, bench/README.md)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
import websockets

from app.cli.main import uvicorn_options
from app.web.asgi import create_app
from app.web.settings import Settings
from subscriptions.transport import SyncStatusTransportHandler
from tests.server import create_token_async, free_port, throwaway_database
from tests.subscriptions.support import METRICS_UPDATES, PROTOCOL, receive, send, subscribe


@asynccontextmanager
async def serving(database_url: str) -> AsyncIterator[str]:
    """The app under uvicorn in this process, as `syncstatus serve` runs it: its ws URL."""
    settings = dataclasses.replace(
        Settings.from_env(),
        database_url=database_url,
        port=free_port(),
        broadcast_url="memory://",
        log_level="warning",
    )
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **uvicorn_options(settings)))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.02)
        yield f"ws://127.0.0.1:{settings.port}/graphql"
    finally:
        server.should_exit = True
        await task


def _init_timeout_leftovers() -> list[object]:
    """Strawberry's connection_init timeout tasks still held, and what their cancellation left
    (the CancelledError, its traceback and the timeout's frame)."""
    found: list[object] = []
    for obj in gc.get_objects():
        if isinstance(obj, SyncStatusTransportHandler) and obj.connection_init_timeout_task:
            found.append(obj.connection_init_timeout_task)
        elif isinstance(obj, types.FrameType) and (
            obj.f_code.co_name == "handle_connection_init_timeout"
        ):
            found.append(obj)
    return found


async def test_an_acknowledged_socket_keeps_nothing_of_its_init_timeout() -> None:
    with throwaway_database("sqlite") as url:
        token = await create_token_async(url, "Footprint", "viewer")
        async with (
            serving(url) as ws_url,
            websockets.connect(
                ws_url,
                subprotocols=[PROTOCOL],  # type: ignore[list-item]
                ping_interval=None,
                proxy=None,
            ) as ws,
        ):
            init = {"authorization": f"Bearer {token}"}
            await send(ws, {"type": "connection_init", "payload": init})
            assert (await receive(ws))["type"] == "connection_ack"
            await subscribe(ws, "m", METRICS_UPDATES)
            assert (await receive(ws))["id"] == "m"
            handlers = [o for o in gc.get_objects() if isinstance(o, SyncStatusTransportHandler)]
            assert len(handlers) == 1 and handlers[0].connection_acknowledged
            assert _init_timeout_leftovers() == []
