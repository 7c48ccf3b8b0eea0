"""At most two CSV exports run at once per app, however fast requests arrive: the slot is
taken before the response starts and given back however it ends, a client leaving early
included. Driven at the ASGI level, so a response can be held mid-stream as a client that
stops reading holds it."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.api_tests import helpers as h
from tests.app_server import AppServer
from tests.conftest import Tenant

PATH = "/export/sync-users.csv"


class Export:
    """One GET of the export whose client does not read the body until `reading` is set."""

    def __init__(self, app: Any, token: str, reading: asyncio.Event) -> None:
        self.status: int | None = None
        self.started = asyncio.Event()
        self.reading = reading
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": PATH,
            "raw_path": PATH.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"syncstatus.test"),
                (b"authorization", f"Bearer {token}".encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("syncstatus.test", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        await asyncio.Event().wait()  # the client neither sends more nor leaves
        raise AssertionError("unreachable")

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started.set()
            # Writing the head yields to other requests, as a socket write does.
            await asyncio.sleep(0.01)
        elif self.status == 200 and message.get("body"):
            await self.reading.wait()


async def test_two_exports_at_once_and_a_leaving_client_frees_its_slot(
    server: AppServer, tenant: Tenant
) -> None:
    await h.add_users(tenant.admin, [f"user{k}@slots.example" for k in range(3)])
    token = server.token(tenant.name, "viewer")
    app = server.transport.app
    stalled = asyncio.Event()
    exports = [Export(app, token, stalled) for _ in range(6)]
    await asyncio.wait_for(asyncio.gather(*(e.started.wait() for e in exports)), 30)
    assert Counter(e.status for e in exports) == {200: 2, 429: 4}

    # The two clients leave mid-stream: their slots come back.
    for export in exports:
        export.task.cancel()
    await asyncio.gather(*(e.task for e in exports), return_exceptions=True)
    reading = asyncio.Event()
    reading.set()
    again = [Export(app, token, reading) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(*(e.task for e in again)), 30)
    assert [e.status for e in again] == [200, 200]
