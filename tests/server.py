"""A real syncstatus server in a subprocess (uvicorn on 127.0.0.1), its database, and clients."""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import httpx

from app.cli import tokens
from app.store.engine import Database, open_database
from app.store.migrate import upgrade
from app.store.models import Tenant
from app.web.settings import Settings
from tests import preforked
from tests.api import Api
from tests.services import postgres_admin_url

# A server's process: started by subprocess, or forked by tests.preforked.
Process: TypeAlias = subprocess.Popen[bytes] | preforked.ForkedProcess

ROOT = Path(__file__).resolve().parent.parent
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_async(coro: Any) -> Any:
    # Works whether or not the caller runs inside an event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="syncstatus-") as folder:
        yield f"sqlite+aiosqlite:///{folder}/syncstatus.db"


@functools.cache
def _migrated_sqlite() -> Path:
    """One SQLite file migrated to the newest schema per test session, copied by open_sqlite:
    an Alembic run costs about a second on a loaded machine, a copy a millisecond."""
    folder = Path(tempfile.mkdtemp(prefix="syncstatus-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "template.db"
    migrate(f"sqlite+aiosqlite:///{path}")
    return path


@asynccontextmanager
async def open_sqlite() -> AsyncIterator[Database]:
    """A migrated throw-away SQLite file, opened in this process (for tests below the API)."""
    with sqlite_database() as url:
        template = await asyncio.to_thread(_migrated_sqlite)
        shutil.copyfile(template, url.removeprefix("sqlite+aiosqlite:///"))
        async with opened(url) as database:
            yield database


@asynccontextmanager
async def opened(database_url: str) -> AsyncIterator[Database]:
    """The database at `database_url` opened in this process until the block ends. One made by
    throwaway_database is at the newest schema already: no upgrade needed."""
    database = open_database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def add_tenant(db: Database, name: str) -> int:
    """A tenant row alone (tests below the API); its id."""
    async with db.write() as session:
        tenant = Tenant(name=name, created_at=0)
        session.add(tenant)
        await session.flush()
        return tenant.id


@contextmanager
def empty_database(kind: str) -> Iterator[str]:
    """A new database with no schema, of the kind a fixture's param names ("sqlite" or
    "postgres"): for tests that migrate it themselves."""
    if kind == "sqlite":
        with sqlite_database() as url:
            yield url
    else:
        with postgres_database(postgres_admin_url()) as url:
            yield url


@contextmanager
def throwaway_database(kind: str) -> Iterator[str]:
    """A fresh database of the kind a fixture's param names ("sqlite" or "postgres"), at the
    newest schema: a copy of a template migrated once per test process (an Alembic run costs
    1.5 s on a loaded machine; the server's or test's own upgrade then finds nothing to do).
    empty_database() gives an empty one."""
    if kind == "sqlite":
        with sqlite_database() as url:
            shutil.copyfile(_migrated_sqlite(), url.removeprefix("sqlite+aiosqlite:///"))
            yield url
    else:
        with postgres_database(postgres_admin_url(), template=_migrated_postgres()) as url:
            yield url


@functools.cache
def _migrated_postgres() -> str:
    """The name of a PostgreSQL database migrated to the newest schema, once per test process,
    dropped at exit: the template of throwaway_database("postgres")."""
    admin_url = postgres_admin_url()
    name = f"syncstatus_template_{uuid.uuid4().hex[:10]}"
    _run_async(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    atexit.register(_drop_at_exit, admin_url, name)
    migrate(_database_url(admin_url, name))
    return name


def _drop_at_exit(admin_url: str, name: str) -> None:
    # At exit no thread can start (_run_async), and no event loop runs any more. pytest has
    # closed its log capture by now: asyncio's debug line on a new loop would print a
    # "Logging error" traceback into the run's output.
    logging.getLogger("asyncio").disabled = True
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def plain_dsn(database_url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy postgresql+asyncpg:// URL."""
    return "postgresql://" + database_url.split("://", 1)[1]


def _database_url(admin_url: str, name: str) -> str:
    base = admin_url.rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"


@contextmanager
def postgres_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A throw-away database on the machine's PostgreSQL (empty, or a copy of `template`),
    dropped afterwards."""
    name = f"syncstatus_test_{uuid.uuid4().hex[:10]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    _run_async(_admin(admin_url, f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield _database_url(admin_url, name)
    finally:
        _run_async(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_cli(
    database_url: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`syncstatus <args>` in a process of its own, to its end, whatever its exit status."""
    env = {**os.environ, "SYNCSTATUS_DATABASE_URL": database_url, **(env or {})}
    if preforked.usable(args, env):  # no 1.5 s of imports per command
        return preforked.run(args, env, ROOT, timeout)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(database_url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs the syncstatus CLI; returns its stdout."""
    result = run_cli(database_url, *args, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"syncstatus {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def create_token(database_url: str, tenant: str, role: str, name: str = "cli") -> str:
    """A new token of the tenant (created if missing), made by the code behind `syncstatus
    token create --create-tenant` (its audit event included) in this process:
    tests/api_tests/test_cli.py drives the command itself, and a CLI process per token cost
    seconds per test tenant."""
    return str(_run_async(create_token_async(database_url, tenant, role, name)))


async def create_token_async(database_url: str, tenant: str, role: str, name: str = "cli") -> str:
    settings = Settings(database_url=database_url)
    return await tokens.create(settings, tenant, role, name, create_tenant=True)


def migrate(database_url: str) -> None:
    """`syncstatus db upgrade` in this process (Alembic drives its own event loop)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, database_url).result()


@dataclass
class Server:
    database_url: str
    port: int
    process: Process
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def token(self, tenant: str, role: str) -> str:
        return create_token(self.database_url, tenant, role)

    def api(self, token: str | None) -> Api:
        return Api(self.graphql_url, self.ws_url, token)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _served_by(health: Any, pid: int) -> bool:
    """Whether /healthz was answered by process `pid` or one of its workers (`--workers N`)."""
    answered = health.get("process", {}).get("pid") if isinstance(health, dict) else None
    if answered is None or answered == pid:
        return True  # a server too old to tell
    try:
        stat = Path(f"/proc/{answered}/stat").read_text()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == pid


def wait_ready(url: str, process: Process, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log_path.read_text()[-3000:]}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=1)
            # Another test process's server may hold the port this one failed to bind.
            if response.status_code == 200 and _served_by(response.json(), process.pid):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not start:\n{log_path.read_text()[-3000:]}")


def start_cli(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> Process:
    """`syncstatus <argv>` started in a process of its own, its stdout and stderr to log_path:
    forked from tests.preforked's forkserver where it can be (no 1.5 s of imports each)."""
    if preforked.usable(argv, env):
        return preforked.start(argv, env, ROOT, log_path)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def run_server(
    database_url: str,
    env: dict[str, str] | None = None,
    command: str = "serve",
    args: Sequence[str] = (),
    *,
    migrated: bool = True,
) -> Iterator[Server]:
    """`syncstatus <command> --port <free port> <args>` until the block ends; its output
    (stdout and stderr) goes to Server.log(). A PostgreSQL database is migrated first unless
    `migrated` is False (the test sets its schema itself)."""
    if not database_url.startswith("sqlite"):
        if migrated:
            migrate(database_url)
    elif command == "serve" and not Path(path := database_url.split(":///", 1)[1]).exists():
        # What the server's start-up upgrade would make of a new file, copied: an Alembic run
        # costs the server 1-1.5 s of CPU. (`demo` still migrates a new file itself.)
        shutil.copyfile(_migrated_sqlite(), path)
    env = {
        **os.environ,
        "SYNCSTATUS_DATABASE_URL": database_url,
        "SYNCSTATUS_LOG_LEVEL": "warning",
        # Tests (and benches) share tokens across many requests and poll: no per-token budget
        # unless a test sets one (tests/api_tests/test_rate_limit.py).
        "SYNCSTATUS_RATE_LIMIT": "0",
        **(env or {}),
    }
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        argv = [command, "--port", str(port), *args]
        with tempfile.NamedTemporaryFile(prefix="syncstatus-log-", delete=False) as log_file:
            log_path = Path(log_file.name)
            process = start_cli(argv, env, log_path)
        try:
            wait_ready(f"http://127.0.0.1:{port}", process, log_path)
            break
        except RuntimeError:
            _stop(process)
            # free_port() finds a port free only for a moment: another test process (an xdist
            # worker, another run) may bind it first. Then the server exits; take another.
            if attempt < PORT_ATTEMPTS and "address already in use" in log_path.read_text():
                continue
            raise
    try:
        yield Server(database_url, port, process, log_path, env)
    finally:
        _stop(process)


def _stop(process: Process) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
