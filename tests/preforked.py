"""Server processes forked from one that has imported the service already.

Each `python -m app.cli serve` of the end-to-end tests spent ~1.5 s of CPU importing
Strawberry, SQLAlchemy, uvicorn and the app before it served, well over a hundred times a
run on a 2-core machine. multiprocessing's forkserver (stdlib) imports them once per test
process and forks each server from there: the same `app.cli.main` with the same command line,
in a process of its own with its own environment, working directory, log, sockets and signal
handling, only without the imports.

What a fresh interpreter decides at start-up keeps a fresh interpreter (tests.server starts
it with subprocess, as before): `--workers` (prometheus-client picks its multiprocess mode on
import), an environment that sets PYTHON* variables, and coverage measurement (coverage starts
in each new interpreter, not in forked children). SYNCSTATUS_TEST_FORK=0 turns this off.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from multiprocessing.context import ForkServerContext
from pathlib import Path

# What `python -m app.cli serve` imports before it serves (app.web.asgi pulls in the rest).
# "__main__" (pytest's script): imported once in the forkserver, not again in every child.
PRELOAD = ["__main__", "app.cli.main", "app.web.asgi", "uvicorn"]
FORKABLE_COMMANDS = ("serve", "demo")

_context: ForkServerContext | None = None


def usable(command: str, args: Sequence[str], env: Mapping[str, str]) -> bool:
    if os.environ.get("SYNCSTATUS_TEST_FORK", "1") == "0" or sys.platform != "linux":
        return False
    if command not in FORKABLE_COMMANDS or "--workers" in args:
        return False
    if any(key.startswith("PYTHON") and os.environ.get(key) != value for key, value in env.items()):
        return False
    try:
        import coverage
    except ImportError:  # pragma: no cover - a dev dependency
        return True
    return coverage.Coverage.current() is None


def _forkserver() -> ForkServerContext:
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        assert isinstance(context, ForkServerContext)
        context.set_forkserver_preload(PRELOAD)
        _context = context
    return _context


class ForkedProcess:
    """The part of subprocess.Popen that tests use, for a process of the forkserver."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        pid = process.pid
        assert pid is not None
        self.pid: int = pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(["app.cli"], timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()


def start(argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> ForkedProcess:
    """`python -m app.cli <argv>` in a process forked from the forkserver."""
    process = _forkserver().Process(
        target=_run, args=(list(argv), dict(env), str(cwd), str(log_path)), daemon=False
    )
    process.start()
    return ForkedProcess(process)


def _run(argv: list[str], env: dict[str, str], cwd: str, log_path: str) -> None:
    """In the forked process: the log as stdout and stderr, the test's environment and
    directory, then the CLI as `python -m app.cli` runs it."""
    preloaded = "app.web.asgi" in sys.modules
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    if not preloaded:  # the forkserver ignores a failed preload: say why it is slow
        print("tests.preforked: the forkserver did not import app.web.asgi", file=sys.stderr)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["syncstatus", *argv]
    from app.cli.main import main

    sys.exit(main(argv))
