"""Helpers for the subscription tests: tenant setup, a worker, gql and raw WebSocket clients.

Every wait is bounded (WAIT), so no test can hang on a lost event.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import websockets
from gql import gql
from websockets.asyncio.client import ClientConnection

from tests.conftest import Tenant
from tests.server import Server

WAIT = 10.0
PROTOCOL = "graphql-transport-ws"

USER_FIELDS = """id email status version latestSyncAt unresolvedFailureCount
  policy { id active }
  currentRun { id state itemsProcessed itemsTotal }
  lastFinishedRun { id state }"""
USER_UPDATES = f"subscription($ids: [ID!]) {{ syncUserUpdated(userIds: $ids) {{ {USER_FIELDS} }} }}"
METRICS_UPDATES = """subscription { syncMetricsUpdated {
  usersWithActivePolicy changesLast24h syncsInProgress failedSyncs totalUsers asOf } }"""

CREATE_POLICY = """mutation($name: String!, $description: String) {
  createPolicy(input: {name: $name, description: $description, active: true,
                       syncIntervalMinutes: 60}) { id } }"""
ADD_USERS = "mutation($users: [SyncUserInput!]!) { addSyncUsers(users: $users) { id } }"
SET_ACTIVE = (
    "mutation($id: ID!, $active: Boolean!) { setPolicyActive(id: $id, active: $active) { id } }"
)
REQUEST_SYNC = "mutation($u: ID!) { requestSync(userId: $u) { version } }"
START = "mutation($u: ID!) { startSyncRun(userId: $u, itemsTotal: 100) { id } }"
REPORT = """mutation($r: ID!, $p: Int!) {
  reportSyncProgress(runId: $r, itemsProcessed: $p, changes: $p) { id } }"""
FINISH = "mutation($r: ID!, $code: String) { finishSyncRun(runId: $r, errorCode: $code) { state } }"


async def add_users(
    tenant: Tenant, count: int, *, description: str | None = None, prefix: str = "user"
) -> tuple[str, list[str]]:
    """An active policy with ``count`` users; returns (policy id, user ids)."""
    name = f"{prefix}-policy"
    policy = (await tenant.admin.execute(CREATE_POLICY, name=name, description=description))[
        "createPolicy"
    ]["id"]
    ids: list[str] = []
    for start in range(0, count, 1000):
        users = [
            {"email": f"{prefix}{i}@m365.example", "destinationEmail": f"{prefix}{i}@g.example"}
            for i in range(start, min(count, start + 1000))
        ]
        for user in users:
            user["policyId"] = policy
        ids += [
            u["id"] for u in (await tenant.admin.execute(ADD_USERS, users=users))["addSyncUsers"]
        ]
    return policy, ids


class Worker:
    """A sync worker reporting runs over GraphQL, as the real ones do."""

    def __init__(self, tenant: Tenant) -> None:
        self.api = tenant.worker

    async def start(self, user_id: str) -> str:
        return str((await self.api.execute(START, u=user_id))["startSyncRun"]["id"])

    async def progress(self, run_id: str, processed: int) -> None:
        await self.api.execute(REPORT, r=run_id, p=processed)

    async def finish(self, run_id: str, error_code: str | None = None) -> str:
        return str(
            (await self.api.execute(FINISH, r=run_id, code=error_code))["finishSyncRun"]["state"]
        )

    async def run(self, user_id: str, progress_reports: int = 3) -> None:
        run_id = await self.start(user_id)
        for i in range(1, progress_reports + 1):
            await self.progress(run_id, i * 10)
        await self.finish(run_id)


class Stream:
    """A gql subscription consumed in the background into a queue."""

    def __init__(self, session: Any, query: str, **variables: Any) -> None:
        self._session = session
        self._query = gql(query)
        self._variables = variables or None
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # When each item came off the socket (time.monotonic()), for tests of pacing: the time
        # a test drains the queue is later, and bunches items read together.
        self.arrivals: list[float] = []

    async def __aenter__(self) -> Stream:
        self._task = asyncio.create_task(self._consume())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _consume(self) -> None:
        try:
            async for item in self._session.subscribe(self._query, variable_values=self._variables):
                self.arrivals.append(time.monotonic())
                self._queue.put_nowait(item)
        except Exception as error:
            self._queue.put_nowait(error)

    async def next(self, within: float = WAIT) -> dict[str, Any]:
        async with asyncio.timeout(within):
            item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def until(
        self, done: Callable[[dict[str, Any]], bool], within: float = WAIT
    ) -> list[dict[str, Any]]:
        """Everything received up to and including the first item for which ``done`` holds."""
        items: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while True:
                items.append(await self.next(within))
                if done(items[-1]):
                    return items

    def drain(self) -> list[dict[str, Any]]:
        items = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, BaseException):
                raise item
            items.append(item)
        return items

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """What arrives within ``seconds`` (for asserting that nothing does)."""
        await asyncio.sleep(seconds)
        return self.drain()


async def until_live(
    poke: Callable[[], Awaitable[object]],
    arrived: Callable[[], Awaitable[bool]],
    within: float = WAIT,
) -> None:
    """Poke until an effect arrives: a subscribe is not acknowledged by the protocol, so this
    is how a test knows the subscription is registered on the server."""
    async with asyncio.timeout(within):
        while True:
            await poke()
            if await arrived():
                return


async def live_user_stream(
    stream: Stream, tenant: Tenant, user_id: str, within: float = WAIT, poll: float = 0.5
) -> dict[str, Any]:
    """Requests syncs of the user (through the tenant's server) until the stream shows one;
    returns that update. Also how a test knows a stream on another server is live."""
    seen: list[dict[str, Any]] = []

    async def arrived() -> bool:
        try:
            seen.append(await stream.next(within=poll))
        except TimeoutError:
            return False
        return True

    await until_live(lambda: tenant.operator.execute(REQUEST_SYNC, u=user_id), arrived, within)
    # Late echoes of further pokes may follow; drop them.
    await stream.quiet(0.3)
    return seen[-1]


def versions(items: list[dict[str, Any]], field: str = "syncUserUpdated") -> list[int]:
    return [item[field]["version"] for item in items]


# -- raw WebSocket clients ------------------------------------------------------------------


@asynccontextmanager
async def raw_socket(
    server: Server,
    token: str | None = None,
    *,
    init: bool = True,
    subprotocol: str = PROTOCOL,
    receive_buffer: int | None = None,
    **options: Any,
) -> AsyncIterator[ClientConnection]:
    """A raw graphql-transport-ws connection (acknowledged if ``init`` and a token is given).

    ``receive_buffer`` shrinks the socket's kernel receive buffer, to make a slow reader felt.
    """
    sock = None
    if receive_buffer is not None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.connect(("127.0.0.1", server.port))
    async with websockets.connect(
        server.ws_url,
        subprotocols=[subprotocol],  # type: ignore[list-item]
        open_timeout=WAIT,
        close_timeout=2,
        ping_interval=None,
        # The server is on 127.0.0.1: no proxy. Looking for one reads the whole environment
        # twice per connection (urllib's getproxies, ~85 us).
        proxy=None,
        sock=sock,
        **options,
    ) as ws:
        if init and token is not None:
            await send(
                ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            )
            ack = await receive(ws)
            assert ack["type"] == "connection_ack", ack
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(
    ws: ClientConnection, within: float = WAIT, *, pings: bool = False
) -> dict[str, Any]:
    """The next message; the server's keep-alive pings are skipped unless ``pings``."""
    async with asyncio.timeout(within):
        while True:
            message = dict(json.loads(await ws.recv()))
            if pings or message.get("type") != "ping":
                return message


async def subscribe(ws: ClientConnection, op_id: str, query: str, **variables: Any) -> None:
    payload: dict[str, Any] = {"query": query}
    if variables:
        payload["variables"] = variables
    await send(ws, {"id": op_id, "type": "subscribe", "payload": payload})


async def close_code(ws: ClientConnection, within: float = WAIT) -> int | None:
    """Reads until the server closes the connection; returns its close code."""
    async with asyncio.timeout(within):
        with suppress(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    return ws.close_code


def health(server: Server) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/healthz", timeout=WAIT).json())


async def eventually(
    condition: Callable[[], bool], within: float = WAIT, every: float = 0.1
) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polling another process's state
            await asyncio.sleep(every)
