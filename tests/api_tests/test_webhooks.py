"""Webhooks on real servers with real receivers (HTTP servers on 127.0.0.1 in this process):
deliveries are written with the run's finish, signed as Standard Webhooks (verified with the
`standardwebhooks` package), retried with backoff until the receiver answers 2xx, survive a
SIGKILL of the server, are bounded per endpoint, and never reach an internal address unless
SYNCSTATUS_WEBHOOK_ALLOW_PRIVATE=1 (which these servers set: the receivers are on loopback)."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.api import Api
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant, new_tenant
from tests.ops.metrics_scrape import scrape, value
from tests.server import Server, plain_dsn, run_server, throwaway_database
from tests.webhook_receiver import Receiver

T = TypeVar("T")
ALL_EVENTS = ["RUN_FAILED", "RUN_COMPLETED_WITH_WARNING", "USER_RECOVERED"]
ENV = {
    "SYNCSTATUS_WEBHOOK_ALLOW_PRIVATE": "1",
    "SYNCSTATUS_WEBHOOK_FIRST_RETRY_SECONDS": "0.2",
    "SYNCSTATUS_WEBHOOK_MAX_RETRY_SECONDS": "0.5",
    "SYNCSTATUS_WEBHOOK_POLL_SECONDS": "0.1",
    "SYNCSTATUS_WEBHOOK_TIMEOUT_SECONDS": "2",
    "SYNCSTATUS_WEBHOOK_ENDPOINT_CONCURRENCY": "3",
}
CREATE = """mutation($url: String!, $events: [WebhookEvent!]!) {
  createWebhook(url: $url, events: $events) {
    secret webhook { id url events active createdAt } } }"""
DELETE = "mutation($id: ID!) { deleteWebhook(id: $id) }"
# A tenant has at most 20 webhooks; a literal page size keeps the cost estimate at 2,021 (a
# variable counts as the largest page, 100, and 100 x deliveries(first: 100) is over the limit).
WEBHOOKS = """query { webhooks(first: 20) { totalCount edges { node {
  id url events active deliveries(first: 100) { totalCount edges { node {
    id event createdAt attempts lastStatusCode deliveredAt nextAttemptAt } } } } } } }"""
NODE = "query($id: ID!) { node(id: $id) { id ... on Webhook { url } } }"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hook_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this module's own: the session's shared server must not deliver these."""
    with throwaway_database(request.param) as url:
        yield url


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {**ENV, **extra}
    if not database_url.startswith("sqlite"):  # SQLite keeps a key file beside the database
        env["SYNCSTATUS_SECRET_KEY"] = "tests-only-server-key-0123456789abcdef"
    return env


@pytest.fixture(scope="module")
def hook_server(hook_db: str) -> Iterator[Server]:
    with run_server(hook_db, env=server_env(hook_db)) as server:
        yield server


@pytest.fixture
def hook_tenant(hook_server: Server, request: pytest.FixtureRequest) -> ApiTenant:
    return new_tenant(hook_server, request.node.name)


async def until(what: str, probe: Callable[[], Awaitable[T | None]], seconds: float = 20) -> T:
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def create_webhook(api: Api, url: str, events: list[str] | None = None) -> dict[str, Any]:
    return (await api.execute(CREATE, url=url, events=events or ALL_EVENTS))["createWebhook"]


async def listed(api: Api) -> list[dict[str, Any]]:
    return [e["node"] for e in (await api.execute(WEBHOOKS))["webhooks"]["edges"]]


async def deliveries(api: Api, webhook_id: str) -> list[dict[str, Any]]:
    for hook in await listed(api):
        if hook["id"] == webhook_id:
            return [e["node"] for e in hook["deliveries"]["edges"]]
    raise AssertionError(f"no webhook {webhook_id}")


async def run_once(
    tenant: ApiTenant, user_id: str, code: str | None = None, items: int = 0
) -> dict[str, Any]:
    run = await h.start(tenant.worker, user_id)
    failed = [h.item(f"msg-{i}") for i in range(items)] or None
    message = "Token expired" if code else None
    return await h.finish(tenant.worker, run["id"], code=code, message=message, items=failed)


def verified(secret: str, received: Any) -> dict[str, Any]:
    return Webhook(secret).verify(received.body, received.headers)


async def test_deliveries_are_signed_and_say_what_happened(hook_tenant: ApiTenant) -> None:
    with Receiver() as receiver, Receiver() as failures_only:
        created = await create_webhook(hook_tenant.admin, receiver.url)
        only = await create_webhook(hook_tenant.admin, failures_only.url, ["RUN_FAILED"])
        secret = created["secret"]
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
        assert created["webhook"]["events"] == ALL_EVENTS and created["webhook"]["active"]
        ann, bob = await h.add_users(hook_tenant.admin, ["ann@w.example", "bob@w.example"])
        failed = await run_once(hook_tenant, ann["id"], code="ERR_AUTH")
        recovered = await run_once(hook_tenant, ann["id"])  # SUCCEEDED after FAILED
        warned = await run_once(hook_tenant, bob["id"], items=2)  # bob never failed
        await run_once(hook_tenant, bob["id"])  # SUCCEEDED after a warning: nothing

        await until("three deliveries", lambda: _at_least(receiver, 3))
        await until("one delivery", lambda: _at_least(failures_only, 1))
        await asyncio.sleep(0.5)  # nothing more comes
        assert len(receiver.received) == 3 and len(failures_only.received) == 1
        bodies = {b["type"]: b for b in (verified(secret, r) for r in receiver.received)}
        assert set(bodies) == {"run.failed", "user.recovered", "run.completed_with_warning"}
        assert bodies["run.failed"]["data"] == {
            "user": {"id": ann["id"], "email": "ann@w.example", "status": "FAILED"},
            "run": {
                "id": failed["id"],
                "state": "FAILED",
                "errorCode": "ERR_AUTH",
                "errorMessage": "Token expired",
                "itemsFailed": 0,
            },
        }
        assert bodies["user.recovered"]["data"]["run"]["id"] == recovered["id"]
        assert bodies["user.recovered"]["data"]["user"]["status"] == "SYNCED"
        assert bodies["run.completed_with_warning"]["data"]["run"] == {
            "id": warned["id"],
            "state": "COMPLETED_WITH_WARNING",
            "errorCode": None,
            "errorMessage": None,
            "itemsFailed": 2,
        }
        for body in bodies.values():
            assert h.when(body["timestamp"])
        assert verified(only["secret"], failures_only.received[0])["type"] == "run.failed"
        with pytest.raises(WebhookVerificationError):
            verified(only["secret"], receiver.received[0])  # another webhook's secret
        forged = receiver.received[0]
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(forged.body.replace(b"run", b"nur"), forged.headers)

        listed_deliveries = await until(
            "deliveries marked delivered",
            lambda: _all_delivered(hook_tenant.admin, created["webhook"]["id"], 3),
        )
        assert {d["id"] for d in listed_deliveries} == set(receiver.ids())
        assert [d["event"] for d in listed_deliveries] == [
            "RUN_COMPLETED_WITH_WARNING",
            "USER_RECOVERED",
            "RUN_FAILED",
        ]  # newest first
        for delivery in listed_deliveries:
            assert delivery["attempts"] == 1 and delivery["lastStatusCode"] == 200
            assert delivery["nextAttemptAt"] is None
        assert receiver.received[0].headers["content-type"] == "application/json"


async def _at_least(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


async def _all_delivered(api: Api, webhook_id: str, count: int) -> list[dict[str, Any]] | None:
    found = await deliveries(api, webhook_id)
    if len(found) == count and all(d["deliveredAt"] for d in found):
        return found
    return None


async def test_a_receiver_down_for_a_while_gets_every_delivery(hook_tenant: ApiTenant) -> None:
    receiver = Receiver()  # not listening yet
    hook = await create_webhook(hook_tenant.admin, receiver.url, ["RUN_FAILED"])
    users = await h.add_users(hook_tenant.admin, [f"u{i}@down.example" for i in range(6)])
    for user in users:
        await run_once(hook_tenant, user["id"], code="ERR_DOWN")

    async def retried() -> list[dict[str, Any]] | None:
        found = await deliveries(hook_tenant.admin, hook["webhook"]["id"])
        return found if len(found) == 6 and all(d["attempts"] >= 2 for d in found) else None

    pending = await until("retries while the receiver is down", retried)
    for delivery in pending:
        assert delivery["deliveredAt"] is None and delivery["lastStatusCode"] is None
        assert delivery["nextAttemptAt"] is not None

    receiver.status = 503  # up, but failing: the status is recorded
    with receiver:
        await until("a 503", lambda: _at_least(receiver, 1))

        async def answered_503() -> list[dict[str, Any]] | None:
            # Outcomes are written in batches after the attempts: poll until it is recorded.
            found = await deliveries(hook_tenant.admin, hook["webhook"]["id"])
            return found if 503 in {d["lastStatusCode"] for d in found} else None

        found = await until("the 503 recorded", answered_503)
        receiver.status = 204
        await until(
            "every delivery",
            lambda: _all_delivered(hook_tenant.admin, hook["webhook"]["id"], 6),
            seconds=30,
        )
        assert {r.headers["webhook-id"] for r in receiver.received if r} >= {d["id"] for d in found}
        for r in receiver.received:
            verified(hook["secret"], r)


async def test_deliveries_per_endpoint_are_bounded_and_a_slow_one_slows_no_other(
    hook_tenant: ApiTenant,
) -> None:
    with Receiver(delay=0.5) as slow, Receiver() as fast:
        await create_webhook(hook_tenant.admin, slow.url, ["RUN_FAILED"])
        users = await h.add_users(hook_tenant.admin, [f"s{i}@slow.example" for i in range(20)])
        for user in users:
            await run_once(hook_tenant, user["id"], code="ERR_STORM")
        await until("the slow receiver busy", lambda: _at_least(slow, 1))
        await create_webhook(hook_tenant.admin, fast.url, ["RUN_FAILED"])
        [late] = await h.add_users(hook_tenant.admin, ["late@slow.example"])
        finished = time.monotonic()
        await run_once(hook_tenant, late["id"], code="ERR_STORM")
        await until("the fast receiver", lambda: _at_least(fast, 1), seconds=5)
        assert fast.received[0].at - finished < 2.0  # the slow backlog needs ~3.5 s more
        assert len(slow.received) < 21
        await until("the slow backlog", lambda: _at_least(slow, 21), seconds=30)
        assert slow.max_in_flight <= 3  # SYNCSTATUS_WEBHOOK_ENDPOINT_CONCURRENCY
        assert len(set(slow.ids())) == 21


async def test_deleting_a_webhook_stops_its_deliveries(hook_tenant: ApiTenant) -> None:
    receiver = Receiver()  # down: its deliveries stay pending
    hook = await create_webhook(hook_tenant.admin, receiver.url)
    [user] = await h.add_users(hook_tenant.admin, ["gone@w.example"])
    await run_once(hook_tenant, user["id"], code="ERR_X")
    await until("a pending delivery", lambda: deliveries(hook_tenant.admin, hook["webhook"]["id"]))
    webhook_id = hook["webhook"]["id"]
    assert (await hook_tenant.admin.execute(DELETE, id=webhook_id))["deleteWebhook"] == webhook_id
    assert await listed(hook_tenant.admin) == []
    assert await hook_tenant.admin.error_code(DELETE, id=webhook_id) == "NOT_FOUND"
    with receiver:
        await asyncio.sleep(1.0)
    assert receiver.received == []
    audit = await hook_tenant.admin.execute(
        "{ auditEvents(first: 10) { edges { node { action targetId summary } } } }"
    )
    actions = [e["node"] for e in audit["auditEvents"]["edges"]]
    assert actions[0] == {
        "action": "webhook.delete",
        "targetId": webhook_id,
        "summary": f"Webhook to http://127.0.0.1:{receiver.port} deleted",
    }
    [created] = [a for a in actions if a["action"] == "webhook.create"]
    assert created["summary"] == (
        f"Webhook to http://127.0.0.1:{receiver.port} created for "
        "RUN_FAILED, RUN_COMPLETED_WITH_WARNING, USER_RECOVERED"
    )


async def test_webhooks_are_admin_only_and_per_tenant(
    hook_tenant: ApiTenant, hook_server: Server
) -> None:
    other = new_tenant(hook_server, "other-hooks")
    hook = await create_webhook(hook_tenant.admin, "http://127.0.0.1:9/hook")
    webhook_id = hook["webhook"]["id"]
    for role in ("viewer", "operator", "worker"):
        api = hook_tenant.api(role)
        assert await api.error_code(WEBHOOKS) == "FORBIDDEN"
        assert await api.error_code(CREATE, url="http://127.0.0.1:9/", events=ALL_EVENTS) == (
            "FORBIDDEN"
        )
        assert await api.error_code(DELETE, id=webhook_id) == "FORBIDDEN"
        assert (await api.execute(NODE, id=webhook_id))["node"] is None
    assert await listed(other.admin) == []
    assert (await other.admin.execute(NODE, id=webhook_id))["node"] is None
    assert await other.admin.error_code(DELETE, id=webhook_id) == "NOT_FOUND"
    assert [w["id"] for w in await listed(hook_tenant.admin)] == [webhook_id]
    node = (await hook_tenant.admin.execute(NODE, id=webhook_id))["node"]
    assert node == {"id": webhook_id, "url": "http://127.0.0.1:9/hook"}
    assert await hook_tenant.admin.error_code(CREATE, url="http://127.0.0.1:9/", events=[]) == (
        "BAD_USER_INPUT"
    )


async def test_the_secret_is_stored_sealed(hook_tenant: ApiTenant, hook_server: Server) -> None:
    hook = await create_webhook(hook_tenant.admin, "http://127.0.0.1:9/sealed")
    key = base64.b64decode(hook["secret"][6:])
    url = hook_server.database_url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        with sqlite3.connect(path) as conn:
            stored = [row[0] for row in conn.execute("SELECT secret_sealed FROM webhooks")]
        mode = stat.S_IMODE(os.stat(path + ".key").st_mode)
        assert mode == 0o600
    else:
        conn = await asyncpg.connect(plain_dsn(url))
        try:
            stored = [r[0] for r in await conn.fetch("SELECT secret_sealed FROM webhooks")]
        finally:
            await conn.close()
    assert stored
    for sealed in stored:
        raw = base64.b64decode(sealed.removeprefix("v1."))
        assert key not in raw and hook["secret"] not in sealed
        assert hook["secret"][6:] not in sealed


SSRF_URLS = [
    "http://127.0.0.1:9/hook",
    "http://10.1.2.3/hook",
    "http://192.168.1.1/hook",
    "http://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:9/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://100.64.0.1/hook",
    "http://localhost:9/hook",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "http://user:password@example.com/hook",
    "http:///hook",
    "http://example.com/" + "a" * 3000,
    "not a url",
]


async def test_a_delivery_survives_sigkill_and_is_refused_at_delivery_time_too(
    hook_db: str,
) -> None:
    with throwaway_database("sqlite" if hook_db.startswith("sqlite") else "postgres") as url:
        await _sigkill_then_restart(url)


async def _sigkill_then_restart(hook_db: str) -> None:
    """Killed with SIGKILL after the run's finish committed and before its delivery arrived,
    the server restarted delivers it. And a target allowed once is checked again at each
    attempt: restarted without ALLOW_PRIVATE, the server sends nothing to loopback."""
    receiver = Receiver()  # down until after the kill
    env = server_env(hook_db)
    with run_server(hook_db, env=env) as server:
        tenant = new_tenant(server, "sigkill")
        hook = await create_webhook(tenant.admin, receiver.url, ["RUN_FAILED"])
        [user] = await h.add_users(tenant.admin, ["killed@w.example"])
        await run_once(tenant, user["id"], code="ERR_KILL")
        await until("an attempt", lambda: _attempted(tenant.admin, hook["webhook"]["id"]))
        server.process.kill()
        server.process.wait()
    strict = {k: v for k, v in env.items() if k != "SYNCSTATUS_WEBHOOK_ALLOW_PRIVATE"}
    with receiver, run_server(hook_db, env=strict) as server:
        # Two attempts refused (the first and a retry), where a fixed 2 s sleep was.
        await until("two refusals", lambda: _refused(server, 2))
        assert receiver.received == []  # refused: loopback without ALLOW_PRIVATE
    with receiver, run_server(hook_db, env=env):
        await until("the delivery after the restart", lambda: _at_least(receiver, 1), seconds=40)
        body = verified(hook["secret"], receiver.received[0])
        assert body["data"]["user"]["email"] == "killed@w.example"


async def _refused(server: Server, count: int) -> bool:
    lines = server.log().splitlines()
    return sum("delivery refused" in line and "loopback" in line for line in lines) >= count


async def _attempted(api: Api, webhook_id: str) -> bool:
    found = await deliveries(api, webhook_id)
    return bool(found) and found[0]["attempts"] >= 1


async def test_a_delivery_failing_past_the_retry_window_is_given_up(hook_db: str) -> None:
    """The window is 24 hours by default; here 3 s (room for 3 attempts on a loaded machine).
    Given up: no next attempt, not delivered."""
    kind = "sqlite" if hook_db.startswith("sqlite") else "postgres"
    with (
        Receiver(status=500) as receiver,
        throwaway_database(kind) as url,
        run_server(url, env=server_env(url, SYNCSTATUS_WEBHOOK_GIVE_UP_SECONDS="3")) as server,
    ):
        tenant = new_tenant(server, "give-up")
        # A receiver's secret in its query string (Slack-style URLs) must stay out of the logs.
        url = receiver.url + "?secret_token=hunter2"
        hook = await create_webhook(tenant.admin, url, ["RUN_FAILED"])
        [user] = await h.add_users(tenant.admin, ["doomed@w.example"])
        await run_once(tenant, user["id"], code="ERR_DOOM")

        async def given_up() -> dict[str, Any] | None:
            [delivery] = await deliveries(tenant.admin, hook["webhook"]["id"])
            return delivery if delivery["nextAttemptAt"] is None else None

        delivery = await until("the delivery given up", given_up)
        assert delivery["deliveredAt"] is None and delivery["lastStatusCode"] == 500
        assert delivery["attempts"] >= 3 and len(receiver.received) == delivery["attempts"]
        await asyncio.sleep(1.0)
        assert len(receiver.received) == delivery["attempts"]  # no more attempts
        # Operators see it: a line per failed attempt and one when given up, and a metric.
        log = server.log()
        assert "attempt 1 failed (HTTP 500)" in log, log[-3000:]
        assert f"given up after {delivery['attempts']} attempts (last: HTTP 500)" in log
        assert "hunter2" not in log
        samples = scrape(server.url)
        attempts = "syncstatus_webhook_attempts_total"
        assert value(samples, attempts, outcome="given_up") == 1
        assert value(samples, attempts, outcome="retrying") == delivery["attempts"] - 1


async def test_two_api_processes_deliver_each_once(hook_db: str, hook_server: Server) -> None:
    """Two servers on one PostgreSQL database (the module's and one more): every delivery
    arrives, and duplicates (if any) are only redeliveries of one webhook-id, which the
    receiver's dedupe absorbs."""
    if hook_db.startswith("sqlite"):
        pytest.skip("several API processes are a PostgreSQL deployment")
    first = hook_server
    with Receiver(delay=0.05) as receiver, run_server(hook_db, env=server_env(hook_db)) as second:
        tenant = new_tenant(first, "two")
        await create_webhook(tenant.admin, receiver.url, ["RUN_FAILED"])
        users = await h.add_users(tenant.admin, [f"p{i}@two.example" for i in range(40)])
        other = ApiTenant(second, tenant.name)  # the same tenant through the second server
        runs = await h.batch(tenant.worker, "startSyncRun", [{"userId": u["id"]} for u in users])
        calls = [{"runId": r["id"], "errorCode": "ERR_TWO"} for r in runs]
        await h.batch(tenant.worker, "finishSyncRun", calls[:20])
        await h.batch(other.worker, "finishSyncRun", calls[20:])
        await until("40 deliveries", lambda: _at_least(receiver, 40), seconds=30)
        await asyncio.sleep(1.0)
        ids = receiver.ids()
        assert len(set(ids)) == 40
        assert len(ids) == 40  # each sent by one process (a lease ending could add a duplicate)


async def test_a_new_webhook_never_inherits_a_deleted_ones_target(hook_tenant: ApiTenant) -> None:
    """SQLite may give a deleted webhook's row id to the next webhook created."""
    with Receiver() as old_receiver, Receiver() as new_receiver:
        old = await create_webhook(hook_tenant.admin, old_receiver.url, ["RUN_FAILED"])
        ann, bob = await h.add_users(hook_tenant.admin, ["ann@re.example", "bob@re.example"])
        await run_once(hook_tenant, ann["id"], code="ERR_OLD")
        await until("the old receiver", lambda: _at_least(old_receiver, 1))
        await hook_tenant.admin.execute(DELETE, id=old["webhook"]["id"])
        new = await create_webhook(hook_tenant.admin, new_receiver.url, ["RUN_FAILED"])
        await run_once(hook_tenant, bob["id"], code="ERR_NEW")
        await until("the new receiver", lambda: _at_least(new_receiver, 1))
        body = verified(new["secret"], new_receiver.received[0])
        assert body["data"]["user"]["email"] == "bob@re.example"
        await asyncio.sleep(0.5)
        assert len(old_receiver.received) == 1


async def test_a_host_name_is_resolved_and_kept_as_the_host_header(hook_tenant: ApiTenant) -> None:
    """The deliverer connects to the address it vetted, with the URL's host as Host header
    (localhost may resolve to ::1 first: the receiver is on 127.0.0.1 only)."""
    with Receiver() as receiver:
        url = f"http://localhost:{receiver.port}/named?x=1"
        hook = await create_webhook(hook_tenant.admin, url, ["RUN_FAILED"])
        [user] = await h.add_users(hook_tenant.admin, ["named@w.example"])
        await run_once(hook_tenant, user["id"], code="ERR_NAMED")
        await until("the delivery", lambda: _at_least(receiver, 1))
        received = receiver.received[0]
        assert received.headers["host"] == f"localhost:{receiver.port}"
        assert received.path == "/named?x=1"
        verified(hook["secret"], received)


async def test_a_server_killed_mid_attempt_sends_again_once_the_lease_ends(hook_db: str) -> None:
    """The attempt's lease (2 x the attempt timeout + 10 s) keeps other processes off it; once it
    ends, the restarted server sends it again: a duplicate webhook-id, never a lost delivery."""
    kind = "sqlite" if hook_db.startswith("sqlite") else "postgres"
    with Receiver(delay=3.0) as receiver, throwaway_database(kind) as url:
        env = server_env(url, SYNCSTATUS_WEBHOOK_TIMEOUT_SECONDS="1")  # a 12 s lease
        with run_server(url, env=env) as server:
            tenant = new_tenant(server, "mid-attempt")
            hook = await create_webhook(tenant.admin, receiver.url, ["RUN_FAILED"])
            [user] = await h.add_users(tenant.admin, ["mid@w.example"])
            await run_once(tenant, user["id"], code="ERR_MID")
            await until("an attempt under way", lambda: _busy(receiver))
            server.process.kill()
            server.process.wait()
        receiver.delay = 0.0
        killed_at = time.monotonic()
        with run_server(url, env=env) as server:
            api = ApiTenant(server, tenant.name).admin
            found = await until(
                "the delivery after the lease",
                lambda: _all_delivered(api, hook["webhook"]["id"], 1),
                seconds=40,
            )
        assert time.monotonic() - killed_at > 5  # not before the lease ended
        assert set(receiver.ids()) == {found[0]["id"]}
        verified(hook["secret"], receiver.received[-1])


async def _busy(receiver: Receiver) -> bool:
    return receiver.in_flight > 0


# Last: the session's shared server between two of this module's tests would set hook_server up
# twice per database (pytest groups tests by hook_db only while no other fixture comes between).
async def test_internal_targets_are_refused_at_creation(tenant: ApiTenant) -> None:
    """The session's shared server: SYNCSTATUS_WEBHOOK_ALLOW_PRIVATE is not set. Nothing is sent
    anywhere: each URL is refused before any connection."""
    for url in SSRF_URLS:
        errors = await tenant.admin.errors(CREATE, url=url, events=["RUN_FAILED"])
        assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], url
    assert await listed(tenant.admin) == []
