"""The `syncstatus` command as processes: db upgrade, token create, list and revoke, audit and
seed, each honouring SYNCSTATUS_DATABASE_URL (run from an empty folder, so the default
./syncstatus.db would show), with its exit status. The many-call scenarios (argument checks,
token tables, revoking, the audit filters) run the same entry point in the test process:
tests/inprocess/test_cli.py."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from app.cli import tokens
from app.domain.ids import encode_id
from app.store.migrate import alembic_config
from app.web.settings import Settings
from tests.api import Api
from tests.api_tests import helpers as h
from tests.server import Server, _run_async, create_token, plain_dsn, postgres_database
from tests.services import postgres_admin_url
from tests.subscriptions.support import close_code, raw_socket, receive, subscribe

SYNCSTATUS = str(Path(sys.executable).with_name("syncstatus"))


def syncstatus(database_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCSTATUS_")}
    return subprocess.run(
        [SYNCSTATUS, *args],
        cwd=cwd,
        env={**env, "SYNCSTATUS_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _empty(folder: Path) -> bool:
    return not any(folder.iterdir())


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


async def _pg_tables(url: str) -> set[str]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await conn.close()


HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def _pg_version(url: str) -> str:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return str(await conn.fetchval("SELECT version_num FROM alembic_version"))
    finally:
        await conn.close()


TABLES = {"tenants", "api_tokens", "policies", "sync_users", "sync_runs", "failed_items"}


def test_db_upgrade_on_sqlite(tmp_path: Path) -> None:
    where = tmp_path / "data" / "store.db"
    where.parent.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    url = f"sqlite+aiosqlite:///{where}"
    for _ in range(2):  # idempotent
        assert "up to date" in _ok(syncstatus(url, "db", "upgrade", cwd=cwd))
    with sqlite3.connect(where) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert tables >= TABLES | {"alembic_version"}
    assert version == [(HEAD,)]
    assert _empty(cwd)  # nothing written to the default ./syncstatus.db


def test_db_upgrade_on_postgres(tmp_path: Path) -> None:
    with postgres_database(postgres_admin_url()) as url:
        assert _run_async(_pg_tables(url)) == set()
        for _ in range(2):
            _ok(syncstatus(url, "db", "upgrade", cwd=tmp_path))
        assert _run_async(_pg_tables(url)) >= TABLES | {"alembic_version"}
        assert _run_async(_pg_version(url)) == HEAD
    assert _empty(tmp_path)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    return tmp_path


async def test_token_create(server: Server, cwd: Path) -> None:
    out = _ok(
        syncstatus(
            server.database_url,
            "token",
            "create",
            "--tenant",
            "cli-t",
            "--role",
            "viewer",
            "--create-tenant",
            cwd=cwd,
        )
    )
    token = out.strip().splitlines()[-1]
    assert token.startswith("sst_") and " " not in token
    viewer = Api(server.graphql_url, server.ws_url, token)
    assert (await h.metrics(viewer))["totalUsers"] == 0
    code = await viewer.error_code(h.CREATE_POLICY, input={"name": "N", "syncIntervalMinutes": 60})
    assert code == "FORBIDDEN"
    admin_out = _ok(
        syncstatus(
            server.database_url,
            "token",
            "create",
            "--tenant",
            "cli-t",
            "--role",
            "admin",
            "--name",
            "ops",
            cwd=cwd,
        )
    )
    admin = Api(server.graphql_url, server.ws_url, admin_out.strip().splitlines()[-1])
    await h.add_users(admin, ["cli@t.example"])
    assert (await h.metrics(viewer))["totalUsers"] == 1  # the same tenant
    # Unknown roles are refused by the command, and no token is printed.
    bad = syncstatus(
        server.database_url, "token", "create", "--tenant", "cli-t", "--role", "root", cwd=cwd
    )
    assert bad.returncode != 0 and "sst_" not in bad.stdout
    # `syncstatus audit` as a process (its filters: tests/inprocess/test_cli.py).
    printed = _ok(syncstatus(server.database_url, "audit", "--tenant", "cli-t", cwd=cwd))
    actions = [line.split()[1] for line in printed.strip().splitlines()]
    assert actions == ["users.add", "token.create", "token.create"]  # newest first
    assert _empty(cwd)  # nothing written to the default ./syncstatus.db


def _table(output: str) -> list[dict[str, str]]:
    header, *rows = output.strip().splitlines()
    names = re.split(r"\s{2,}", header)
    return [dict(zip(names, re.split(r"\s{2,}", row), strict=True)) for row in rows]


async def test_token_create_refuses_a_tenant_that_does_not_exist(server: Server, cwd: Path) -> None:
    """The refusal as a process shows it (exit status, stderr); the other refusals and the
    listing after them: tests/inprocess/test_cli.py."""
    create = ("token", "create", "--tenant", "Nope-cli", "--role", "viewer")
    missing = syncstatus(server.database_url, *create, cwd=cwd)
    assert missing.returncode == 1
    assert "Nope-cli" in missing.stderr and "--create-tenant" in missing.stderr
    assert "sst_" not in missing.stdout
    assert _empty(cwd)


async def test_a_running_server_applies_a_revocation_by_the_cli(server: Server, cwd: Path) -> None:
    """`token revoke` and `token list` as processes beside a running server, which closes the
    revoked token's subscription on its own. The scenario's every other step (tables, expiry,
    revoking again, other tenants' and malformed ids): tests/inprocess/test_cli.py."""
    url = server.database_url
    tenant = "cli-revoke"
    admin = create_token(url, tenant, "admin")
    viewer = create_token(url, tenant, "viewer", "wall screen")
    viewer_api = Api(server.graphql_url, server.ws_url, viewer)
    assert (await h.metrics(viewer_api))["totalUsers"] == 0
    (view,) = [
        t
        for t in await tokens.list_tokens(Settings(database_url=url), tenant)
        if t.name == "wall screen"
    ]
    viewer_id = encode_id("ApiTokenInfo", view.id)

    async with raw_socket(server, viewer) as ws:
        await subscribe(ws, "1", "subscription { syncMetricsUpdated { totalUsers } }")
        assert (await receive(ws))["type"] == "next"
        out = _ok(syncstatus(url, "token", "revoke", "--tenant", tenant, viewer_id, cwd=cwd))
        assert "revoked" in out
        # The running server finds the revocation on its own (the CLI's broadcast is in-process).
        assert await close_code(ws, within=10) == 4403
    code = await viewer_api.error_code(h.METRICS)
    assert code == "UNAUTHENTICATED"
    listing = _ok(syncstatus(url, "token", "list", "--tenant", tenant, cwd=cwd))
    assert admin not in listing and viewer not in listing and "sst_" not in listing
    after = {r["id"]: r for r in _table(listing)}
    assert after[viewer_id]["name"] == "wall screen" and after[viewer_id]["revoked"] != "-"
    assert [r["revoked"] for i, r in after.items() if i != viewer_id] == ["-"]
    assert (await h.metrics(Api(server.graphql_url, server.ws_url, admin)))["totalUsers"] == 0
    assert _empty(cwd)


async def test_seed(server: Server, cwd: Path) -> None:
    """`seed` as a process, into the database of SYNCSTATUS_DATABASE_URL; what it writes,
    checked through the API: tests/inprocess/test_cli.py."""
    out = _ok(
        syncstatus(server.database_url, "seed", "--tenant", "cli-seed", "--users", "20", cwd=cwd)
    )
    assert "seeded 20 users" in out
    token = create_token(server.database_url, "cli-seed", "admin")
    assert (await h.metrics(Api(server.graphql_url, server.ws_url, token)))["totalUsers"] == 20
    assert _empty(cwd)  # nothing written to the default ./syncstatus.db
