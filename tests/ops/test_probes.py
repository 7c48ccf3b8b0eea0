"""GET /livez and /readyz, and `serve` refusing a PostgreSQL schema behind the newest migration."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command

from app.ops.probes import SCHEMA_CACHE_SECONDS
from app.store.migrate import alembic_config
from app.store.schema_version import head_revisions
from tests.ops.metrics_scrape import scrape, value
from tests.private_redis import PrivateRedis
from tests.server import (
    Server,
    free_port,
    plain_dsn,
    postgres_database,
    run_cli,
    run_server,
    start_cli,
)
from tests.services import postgres_admin_url


def _cli(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(database_url, *args, env=env, timeout=60)


def _serve(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return _cli(database_url, "serve", "--port", str(free_port()), *args, env=env)


def test_livez_and_readyz_answer_200_when_all_is_well(server: Server) -> None:
    assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
    response = httpx.get(f"{server.url}/readyz", timeout=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["failing"] == []
    assert body["checks"] == {name: {"ok": True} for name in ("database", "schema", "broker")}


@pytest.mark.parametrize("revision", [None, "0003"])
def test_serve_refuses_a_postgres_schema_behind_the_newest_migration(revision: str | None) -> None:
    with postgres_database(postgres_admin_url()) as url:
        if revision is not None:
            command.upgrade(alembic_config(url), revision)
        started = time.monotonic()
        result = _serve(url)
        assert result.returncode == 2
        assert time.monotonic() - started < 30
        assert "syncstatus db upgrade" in result.stderr, result.stderr
        assert (revision or "never migrated") in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("token", "list", "--tenant", "t"),
        ("token", "create", "--tenant", "t", "--role", "viewer", "--create-tenant"),
        ("audit", "--tenant", "t"),
    ],
    ids=["token-list", "token-create", "audit"],
)
def test_commands_leave_a_postgres_schema_behind_to_db_upgrade(args: tuple[str, ...]) -> None:
    """They migrated it themselves (0003 to the newest: table rewrites, from a token
    listing); like serve, they now say to run `syncstatus db upgrade` and change nothing."""
    with postgres_database(postgres_admin_url()) as url:
        command.upgrade(alembic_config(url), "0003")
        result = _cli(url, *args)
        assert result.returncode == 2  # as serve (README): the command did not run
        assert "syncstatus db upgrade" in result.stderr and "0003" in result.stderr, result.stderr
        assert "sst_" not in result.stdout
        assert asyncio.run(_revisions(url)) == ["0003"]


def test_two_upgrades_at_once_take_turns() -> None:
    """Two `db upgrade` of one empty database at once (an init container per pod): both ran
    the migrations and one died on a duplicate key; they now take turns, and the second finds
    nothing to do."""
    with postgres_database(postgres_admin_url()) as url, tempfile.TemporaryDirectory() as logs:
        env = {**os.environ, "SYNCSTATUS_DATABASE_URL": url}
        outputs = [Path(logs, str(n)) for n in range(2)]
        upgrades = [start_cli(["db", "upgrade"], env, output) for output in outputs]
        codes = [upgrade.wait(timeout=180) for upgrade in upgrades]
        assert codes == [0, 0], [output.read_text() for output in outputs]
        assert sorted(asyncio.run(_revisions(url))) == sorted(head_revisions())


async def _revisions(url: str) -> list[str]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return [row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await conn.close()


def test_serve_says_in_one_line_that_the_broker_is_unreachable(tmp_path: Path) -> None:
    """Starting while the broker is down was a 60-line traceback from uvicorn's start."""
    unreachable = {"SYNCSTATUS_BROADCAST_URL": f"redis://127.0.0.1:{free_port()}/0"}
    result = _serve(f"sqlite+aiosqlite:///{tmp_path}/broker.db", env=unreachable)
    assert result.returncode == 2, result.stderr
    assert "syncstatus serve: cannot reach the broker" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_readyz_names_a_schema_behind_and_a_lost_broker() -> None:
    redis = PrivateRedis()
    redis.start()
    try:
        with (
            postgres_database(postgres_admin_url()) as url,
            run_server(url, env={"SYNCSTATUS_BROADCAST_URL": redis.url}) as server,
        ):
            assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
            (head,) = head_revisions()
            _set_revision(url, "0003")
            body = _wait_unready(server, "schema")
            assert "syncstatus db upgrade" in body["checks"]["schema"]["error"]
            assert body["checks"]["database"] == {"ok": True}
            _set_revision(url, head)
            _wait_ready(server)

            redis.kill()
            body = _wait_unready(server, "broker")
            assert body["failing"] == ["broker"]
            redis.start()
            _wait_ready(server)
            reconnects = value(scrape(server.url), "syncstatus_broker_reconnects_total")
            assert reconnects >= 1
    finally:
        redis.kill()


def test_a_schema_ahead_of_the_code_keeps_the_old_release_serving() -> None:
    """A rolling upgrade: the next release ran `db upgrade` (a revision this code does not
    know), and the old processes stay ready and serving until they are replaced; an old
    process (re)started meanwhile serves too, and the old CLI neither migrates nor fails."""
    with postgres_database(postgres_admin_url()) as url, run_server(url) as server:
        _set_revision(url, "9999")
        time.sleep(SCHEMA_CACHE_SECONDS + 1)  # the probe has read it by now
        response = httpx.get(f"{server.url}/readyz", timeout=5)
        assert response.status_code == 200, response.text
        with run_server(url, migrated=False) as restarted:
            assert httpx.get(f"{restarted.url}/readyz", timeout=5).status_code == 200
        upgraded = _cli(url, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert "revision 9999, newer than this release's newest" in upgraded.stdout
        create = ("token", "create", "--tenant", "Ahead", "--role", "viewer", "--create-tenant")
        created = _cli(url, *create)
        assert created.returncode == 0 and "Traceback" not in created.stderr, created.stderr
        listed = _cli(url, "token", "list", "--tenant", "Ahead")
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr


def _set_revision(url: str, revision: str) -> None:
    async def update() -> None:
        conn = await asyncpg.connect(plain_dsn(url))
        try:
            await conn.execute("UPDATE alembic_version SET version_num = $1", revision)
        finally:
            await conn.close()

    asyncio.run(update())


def _wait_unready(server: Server, check: str, within: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = httpx.get(f"{server.url}/readyz", timeout=5)
        body = response.json()
        if response.status_code == 503 and check in body["failing"]:
            return dict(body)
        assert response.status_code == 200 and time.monotonic() < deadline, body
        time.sleep(0.2)


def _wait_ready(server: Server, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while httpx.get(f"{server.url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "never ready again"
        time.sleep(0.2)
