"""A throwaway redis-server of the test's own, which a test may pause, kill and restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

WAIT = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throwaway redis-server that a test may kill and restart on the same port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"private redis-server did not start on port {self.port}")

    def pause(self) -> None:
        """Freeze the server: connections stay open but nothing answers (a silent network loss)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=WAIT)
            self._process = None


@contextmanager
def started_private_redis() -> Iterator[PrivateRedis]:
    """Skips without the redis-server binary, or fails under SYNCSTATUS_REQUIRE_SERVICES=1."""
    if shutil.which("redis-server") is None:
        reason = "redis-server binary not on PATH"
        if os.environ.get("SYNCSTATUS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and SYNCSTATUS_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()
