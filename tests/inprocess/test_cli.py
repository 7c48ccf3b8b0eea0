"""The `syncstatus` command's many-call scenarios, run in this process: app.cli.main.main(argv)
as the console script calls it, against the in-process app's database, with its environment
(SYNCSTATUS_DATABASE_URL only) and an empty working folder of its own. What only a real process
shows (exit statuses, the environment honoured, nothing written to the working folder, a running
server applying a revocation) stays in tests/api_tests/test_cli.py, one process per command."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from gql.transport.exceptions import TransportQueryError

from app.cli import main as cli_main
from tests.api import Api
from tests.api_tests import helpers as h
from tests.api_tests.test_audit import events
from tests.app_server import AppServer

T = TypeVar("T")
KEEP_ENV = ("SYNCSTATUS_TEST_", "SYNCSTATUS_REQUIRE_SERVICES")  # the tests' own, not the CLI's


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _main(argv: Sequence[str]) -> int:
    try:
        return cli_main.main(argv)
    except SystemExit as exit:  # argparse refusing the arguments
        return exit.code if isinstance(exit.code, int) else 1


class Syncstatus:
    """Runs the command in this process (on a thread: it runs its own event loop) and captures
    what it prints. Logging stays pytest's: the subprocess tests run the command's own."""

    def __init__(self, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.cwd = cwd
        self._capsys = capsys

    async def __call__(self, *args: str) -> Ran:
        self._capsys.readouterr()
        code = await asyncio.to_thread(_main, list(args))
        out, err = self._capsys.readouterr()
        return Ran(code, out, err)

    def cwd_is_empty(self) -> bool:
        return not any(self.cwd.iterdir())  # nothing written to the default ./syncstatus.db


@pytest.fixture
def syncstatus(
    server: AppServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Syncstatus:
    for name in list(os.environ):
        if name.startswith("SYNCSTATUS_") and not name.startswith(KEEP_ENV):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SYNCSTATUS_DATABASE_URL", server.database_url)
    monkeypatch.setattr(cli_main, "configure_logging", lambda level, log_format: None)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return Syncstatus(cwd, capsys)


def _ok(result: Ran) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _token(result: Ran) -> str:
    return _ok(result).strip().splitlines()[-1]


def _table(output: str) -> list[dict[str, str]]:
    header, *rows = output.strip().splitlines()
    names = re.split(r"\s{2,}", header)
    return [dict(zip(names, re.split(r"\s{2,}", row), strict=True)) for row in rows]


async def _within(what: str, probe: Callable[[], Awaitable[T | None]], seconds: float) -> T:
    deadline = time.monotonic() + seconds
    while (found := await probe()) is None:
        assert time.monotonic() < deadline, f"not within {seconds:.0f} s: {what}"
        await asyncio.sleep(0.1)
    return found


async def test_token_create_refuses_a_tenant_that_does_not_exist(syncstatus: Syncstatus) -> None:
    create = ("token", "create", "--tenant", "Nope-cli", "--role", "viewer")
    missing = await syncstatus(*create)
    assert missing.returncode == 1  # ran; no such tenant
    assert "Nope-cli" in missing.stderr and "--create-tenant" in missing.stderr
    assert "sst_" not in missing.stdout
    # Nothing was created: the tenant still does not exist.
    listing = await syncstatus("token", "list", "--tenant", "Nope-cli")
    assert listing.returncode == 1 and "Nope-cli" in listing.stderr
    for days in ("0", "-1", "3651", "soon"):
        bad = await syncstatus(*create, "--create-tenant", "--expires-in-days", days)
        assert bad.returncode == 2 and "sst_" not in bad.stdout, days  # did not run
    assert (await syncstatus("token", "list", "--tenant", "Nope-cli")).returncode != 0
    # A blank tenant name is no tenant (it was created, named "").
    blank = await syncstatus(
        "token", "create", "--tenant", " ", "--role", "viewer", "--create-tenant"
    )
    assert blank.returncode == 2 and "--tenant must not be blank" in blank.stderr
    assert "sst_" not in blank.stdout
    assert syncstatus.cwd_is_empty()


async def test_token_list_and_revoke(server: AppServer, syncstatus: Syncstatus) -> None:
    tenant = "cli-revoke"
    create = ("token", "create", "--tenant", tenant)
    admin = _token(await syncstatus(*create, "--role", "admin", "--create-tenant"))
    named = ("--role", "viewer", "--name", "wall screen", "--expires-in-days", "7")
    viewer = _token(await syncstatus(*create, *named))
    viewer_api = server.api(viewer)
    assert (await h.metrics(viewer_api))["totalUsers"] == 0

    listing = _ok(await syncstatus("token", "list", "--tenant", tenant))
    assert admin not in listing and viewer not in listing and "sst_" not in listing
    rows = _table(listing)
    assert list(rows[0]) == ["id", "name", "role", "created", "expires", "last used", "revoked"]
    assert [(r["name"], r["role"], r["revoked"]) for r in rows] == [
        ("wall screen", "VIEWER", "-"),
        ("cli", "ADMIN", "-"),
    ]
    expires = datetime.strptime(rows[0]["expires"], "%Y-%m-%d %H:%M:%SZ")
    created = datetime.strptime(rows[0]["created"], "%Y-%m-%d %H:%M:%SZ")
    assert abs(expires - created - timedelta(days=7)) <= timedelta(seconds=5)
    assert rows[1]["expires"] == "-"

    async def used() -> list[dict[str, str]] | None:
        # The app writes a token's last use a moment after the request (app.auth.usage).
        found = _table(_ok(await syncstatus("token", "list", "--tenant", tenant)))
        return found if found[0]["last used"] != "-" else None

    await _within("the viewer token's use is recorded", used, 30)
    out = _ok(await syncstatus("token", "revoke", "--tenant", tenant, rows[0]["id"]))
    assert "revoked" in out

    async def refused() -> str | None:
        # The app finds the revocation on its own (the CLI's broadcast is in-process).
        try:
            await viewer_api.execute(h.METRICS)
        except TransportQueryError:
            return await viewer_api.error_code(h.METRICS)
        return None

    code = await _within("the app refuses the revoked token", refused, 10)
    assert code == "UNAUTHENTICATED"
    after = _table(_ok(await syncstatus("token", "list", "--tenant", tenant)))
    assert after[0]["revoked"] != "-" and after[1]["revoked"] == "-"
    assert after[0]["last used"] != "-"  # it was used before
    # Again: no change; another tenant's or a malformed id: an error.
    _ok(await syncstatus("token", "revoke", "--tenant", tenant, rows[0]["id"]))
    assert _table(_ok(await syncstatus("token", "list", "--tenant", tenant))) == after
    other = ("token", "create", "--tenant", "cli-other", "--role", "admin", "--create-tenant")
    _ok(await syncstatus(*other))
    foreign = await syncstatus("token", "revoke", "--tenant", "cli-other", rows[1]["id"])
    assert foreign.returncode == 1 and "cli-other" in foreign.stderr
    garbage = await syncstatus("token", "revoke", "--tenant", tenant, "nope")
    assert garbage.returncode == 2
    assert (await h.metrics(server.api(admin)))["totalUsers"] == 0
    assert syncstatus.cwd_is_empty()


async def test_the_cli_records_its_tokens_and_prints_the_log(
    server: AppServer, syncstatus: Syncstatus
) -> None:
    name = f"cli-audit-{uuid.uuid4().hex[:8]}"
    token = server.token(name, "admin")  # `syncstatus token create`
    api = server.api(token)
    await h.create_policy(api, "Printed")
    found = await events(api)
    assert [(e["action"], e["actor"], e["actorRole"]) for e in found] == [
        ("policy.create", "cli", "ADMIN"),
        ("token.create", "cli", None),
    ]
    assert found[1]["summary"] == "Token 'cli' created with role ADMIN"
    printed = _ok(await syncstatus("audit", "--tenant", name)).strip().splitlines()
    assert len(printed) == 2
    assert "policy.create" in printed[0] and "Policy 'Printed' created" in printed[0]
    assert "token.create" in printed[1] and "cli" in printed[1]
    only = _ok(await syncstatus("audit", "--tenant", name, "--action", "token.create"))
    assert len(only.strip().splitlines()) == 1 and "token.create" in only
    since = h.iso(h.when(found[0]["at"]) + timedelta(seconds=1))
    assert _ok(await syncstatus("audit", "--tenant", name, "--since", since)).strip() == ""
    assert syncstatus.cwd_is_empty()


async def test_the_demo_refuses_a_speed_that_is_not_positive(syncstatus: Syncstatus) -> None:
    for speed in ("0", "-2"):
        refused = await syncstatus("demo", "--speed", speed)
        assert refused.returncode == 2 and "--speed must be positive" in refused.stderr, speed
    assert syncstatus.cwd_is_empty()


async def test_seed(server: AppServer, syncstatus: Syncstatus) -> None:
    users = 300
    out = _ok(await syncstatus("seed", "--tenant", "cli-seed", "--users", str(users)))
    assert f"seeded {users} users" in out
    api = server.api(server.token("cli-seed", "admin"))
    found = await h.metrics(api)
    assert found["totalUsers"] == users
    listed = await h.all_users(api)
    assert len(listed) == users
    statuses = Counter(u["status"] for u in listed)
    assert set(statuses) == set(h.STATUSES)  # every status appears
    for status in h.STATUSES:
        page = (await api.execute(h.SYNC_USERS, filter={"status": status}, first=1))["syncUsers"]
        assert page["totalCount"] == statuses[status], status
    total = (await api.execute(h.SYNC_USERS, first=1))["syncUsers"]["totalCount"]
    assert total == users
    assert found["failedSyncs"] == statuses["FAILED"]
    assert found["syncsInProgress"] == statuses["IN_PROGRESS"]
    policies = await h.all_policies(api)
    assert sum(p["userCount"] for p in policies) == users
    assert found["usersWithActivePolicy"] == sum(p["userCount"] for p in policies if p["active"])
    assert found["changesLast24h"] > 0
    # Seeded rows leave the id sequences right: the API adds users and runs after them.
    (added,) = await h.add_users(api, ["after.seed@t.example"], policies[0]["id"])
    run = await h.start(api, added["id"])
    await h.finish(api, run["id"])
    assert (await h.metrics(api))["totalUsers"] == users + 1
    assert syncstatus.cwd_is_empty()

    await _history_filters(api, await h.all_users(api))


async def _history_filters(api: Api, users: list[dict[str, Any]]) -> None:
    """The seed spreads latest syncs over days: date ranges cross hours (the counters are
    kept per hour) and are checked, with the other filters, against brute force."""
    times = sorted({h.when(u["latestSyncAt"]) for u in users if u["latestSyncAt"]})
    assert times[-1] - times[0] > timedelta(days=1)
    hour = timedelta(hours=1)
    micro = timedelta(microseconds=1)
    edges: list[datetime] = []
    for t in (times[len(times) // 5], times[len(times) // 2], times[-3]):
        floor = t.replace(minute=0, second=0, microsecond=0)
        edges += [t, t - micro, t + micro, floor, floor - micro, floor + hour]
    policies = {u["policy"]["id"] for u in users if u["policy"]}
    some_policy = sorted(policies)[0]
    filters: list[dict[str, Any]] = []
    for low, high in zip(edges, edges[3:] + edges[:3], strict=True):
        low, high = min(low, high), max(low, high)
        filters += [
            {"latestSyncFrom": h.iso(low)},
            {"latestSyncTo": h.iso(high)},
            {"latestSyncFrom": h.iso(low), "latestSyncTo": h.iso(high)},
        ]
    filters += [
        {"latestSyncFrom": h.iso(times[10]), "status": "FAILED"},
        {"latestSyncTo": h.iso(times[-10]), "policyId": some_policy},
        {
            "latestSyncFrom": h.iso(times[5]),
            "latestSyncTo": h.iso(times[-5]),
            "status": "SYNCED",
            "policyId": some_policy,
        },
        {"latestSyncFrom": h.iso(times[0]), "latestSyncTo": h.iso(times[-1])},
        {"latestSyncFrom": h.iso(times[0] - timedelta(days=30)), "emailContains": "a"},
        {"status": "IN_PROGRESS", "policyId": some_policy},
        {"emailContains": "smith", "status": "COMPLETED_WITH_WARNING"},
    ]
    for filt in filters:
        for order in ("EMAIL_ASC", "LATEST_SYNC_DESC"):
            want = h.expected_ids(users, filt, order)
            found = (await api.execute(h.SYNC_USERS, filter=filt, order=order, first=100))[
                "syncUsers"
            ]
            assert found["totalCount"] == len(want), filt
            assert [e["node"]["id"] for e in found["edges"]] == want[:100], (filt, order)
