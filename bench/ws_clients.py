"""Lightweight dashboard clients for bench/subscriptions.py: one process holds many raw
graphql-transport-ws sockets (the `websockets` package, no gql), each subscribed as an open
Sync Status page is: syncUserUpdated for a page of users (the page's own query) plus
syncMetricsUpdated.

    python bench/ws_clients.py URL TOKEN SPEC_JSON OUT_JSON

SPEC_JSON: {"pages": [[user ids], ...] or null per socket for the whole tenant, "connect": n}.
Protocol with the parent on stdin/stdout (one word per line): prints "ready <n>" once every
socket's subscriptions are live (its first metrics message arrived); after "record" it keeps
each syncUserUpdated as (socket index, user row id, version, monotonic receive time) until
"stop", then writes OUT_JSON and prints "done"; "count" prints how many it kept so far.
"record" again starts afresh; "exit" ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import websockets

# The page's live query (app/web/static/js/queries.js: USER_SUBSCRIPTION with LiveUserFields).
RUN_FIELDS = """id kind service state startedAt finishedAt durationSeconds itemsTotal
  itemsProcessed itemsFailed changes progress errorCode errorMessage"""
USER_SUBSCRIPTION = f"""subscription SyncUserUpdated($userIds: [ID!]) {{
  syncUserUpdated(userIds: $userIds) {{ id email destinationEmail version status latestSyncAt
    nextScheduledSyncAt unresolvedFailureCount policy {{ id name active }}
    currentRun {{ {RUN_FIELDS} }} lastFinishedRun {{ {RUN_FIELDS} }} }} }}"""
METRICS_SUBSCRIPTION = """subscription SyncMetricsUpdated { syncMetricsUpdated {
  usersWithActivePolicy changesLast24h syncsInProgress failedSyncs totalUsers asOf } }"""
CONNECT_CONCURRENCY = 100


def row_id(global_id: str) -> int:
    raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
    return int(raw.partition(":")[2])


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[int, int, int, float]] = []  # socket, user, version, time
        self.metrics = 0
        self.errors: list[Any] = []
        self.recording = False


async def dashboard(
    url: str, token: str, index: int, page: list[str] | None, live: asyncio.Event, rec: Recorder
) -> None:
    async with websockets.connect(
        url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        compression=None,
        ping_interval=None,
        max_queue=None,
        open_timeout=120,
    ) as ws:
        init = {"authorization": f"Bearer {token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"not acknowledged: {ack}")
        variables = {"userIds": page} if page is not None else {}
        for op, query, var in (
            ("u", USER_SUBSCRIPTION, variables),
            ("m", METRICS_SUBSCRIPTION, {}),
        ):
            payload = {"query": query, "variables": var}
            await ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))
        async for raw in ws:
            now = time.monotonic()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "next" and message.get("id") == "u":
                if rec.recording:
                    data = message["payload"].get("data") or {}
                    user = data.get("syncUserUpdated")
                    if user is None:
                        rec.errors.append(message["payload"])
                    else:
                        rec.updates.append((index, row_id(user["id"]), user["version"], now))
            elif kind == "next":
                rec.metrics += rec.recording
                live.set()
            elif kind == "ping":
                await ws.send('{"type":"pong"}')
            elif kind in ("error", "complete"):
                rec.errors.append(message)


async def main() -> None:
    url, token, spec_path, out_path = sys.argv[1:5]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spec = json.loads(Path(spec_path).read_text())  # noqa: ASYNC240 - before any socket
    rec = Recorder()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    lives: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []

    async def start(index: int, page: list[str] | None) -> None:
        live = asyncio.Event()
        lives.append(live)
        async with gate:
            tasks.append(asyncio.create_task(dashboard(url, token, index, page, live, rec)))
            await live.wait()

    await asyncio.gather(*(start(i, page) for i, page in enumerate(spec["pages"])))
    print(f"ready {len(lives)}", flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (line := (await reader.readline()).decode().strip()) not in ("exit", ""):
        if line == "count":
            print(f"count {len(rec.updates)}", flush=True)
        elif line == "record":
            rec.updates, rec.metrics, rec.errors = [], 0, []
            rec.recording = True
            print("recording", flush=True)
        elif line == "stop":
            rec.recording = False
            failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
            result = {
                "updates": rec.updates,
                "metrics": rec.metrics,
                "errors": rec.errors[:20] + [repr(t.exception()) for t in failed[:20]],
                "closed": len(failed),
            }
            # Blocking on purpose: recording stopped, and the parent waits for the file.
            Path(out_path).write_text(json.dumps(result))  # noqa: ASYNC240
            print("done", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
