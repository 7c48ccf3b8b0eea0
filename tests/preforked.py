"""Server processes forked from one that has imported the service already.

Each `python -m app.cli serve` of the end-to-end tests spent ~1.5 s of CPU importing
Strawberry, SQLAlchemy, uvicorn and the app before it served, well over a hundred times a
run on a 2-core machine. multiprocessing's forkserver (stdlib) imports them once per test
process and forks each server from there: the same `app.cli.main` with the same command line,
in a process of its own with its own environment, working directory, log, sockets and signal
handling, only without the imports.

tests.server.run_cli forks the CLI's one-shot commands (seed, prune, token, db upgrade) from
the same forkserver, with stdout and stderr kept apart as subprocess.run gives them.

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
import tempfile
from collections.abc import Mapping, Sequence
from multiprocessing.context import ForkServerContext
from pathlib import Path

# What `python -m app.cli serve` imports before it serves (app.web.asgi pulls in the rest).
# "__main__" (pytest's script): imported once in the forkserver, not again in every child.
PRELOAD = ["__main__", "app.cli.main", "app.web.asgi", "uvicorn"]

_context: ForkServerContext | None = None


def usable(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    if os.environ.get("SYNCSTATUS_TEST_FORK", "1") == "0" or sys.platform != "linux":
        return False
    if "--workers" in argv:
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


def start(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    err_path: Path | None = None,
) -> ForkedProcess:
    """`python -m app.cli <argv>` in a process forked from the forkserver, its stdout to
    log_path and its stderr to err_path (log_path too if None)."""
    paths = (str(log_path), str(err_path or log_path))
    process = _forkserver().Process(
        target=_run, args=(list(argv), dict(env), str(cwd), paths), daemon=False
    )
    process.start()
    return ForkedProcess(process)


def run(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """What subprocess.run(..., capture_output=True, text=True) gives for `python -m app.cli
    <argv>`, the process forked from the forkserver."""
    with tempfile.TemporaryDirectory(prefix="syncstatus-cli-") as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        out.touch()  # read below even if the child died before it opened them
        err.touch()
        process = start(argv, env, cwd, out, err)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        command = [sys.executable, "-m", "app.cli", *argv]
        return subprocess.CompletedProcess(command, code, out.read_text(), err.read_text())


def _run(argv: list[str], env: dict[str, str], cwd: str, paths: tuple[str, str]) -> None:
    """In the forked process: stdout and stderr to their files, the test's environment and
    directory, then the CLI as `python -m app.cli` runs it."""
    preloaded = "app.web.asgi" in sys.modules
    for fd, path in zip((1, 2), paths, strict=True):
        opened = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    if not preloaded:  # the forkserver ignores a failed preload: say why it is slow
        print("tests.preforked: the forkserver did not import app.web.asgi", file=sys.stderr)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["syncstatus", *argv]
    from app.cli.main import main

    sys.exit(main(argv))
