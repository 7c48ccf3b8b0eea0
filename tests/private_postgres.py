"""A throwaway PostgreSQL cluster of the test's own (initdb/pg_ctl from Debian's packages, as
the postgres user when run as root), which a test may stop and start again on the same port.
Never the machine's shared server."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.server import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        initdb, self._pg_ctl = _bin("initdb"), _bin("pg_ctl")
        assert initdb and self._pg_ctl
        if self._as_postgres:
            shutil.chown(folder, "postgres", "postgres")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        # fsync off is safe here (the machine does not crash, only the server stops), but
        # synchronous_commit stays on: with it off, an immediate stop loses commits that were
        # already acknowledged, which a real outage never does (a test's tenant vanished).
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            "-c fsync=off -c full_page_writes=off"
        )
        log = str(self.folder / "postgres.log")
        assert self._pg_ctl
        self._run(self._pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """An immediate stop: connections drop at once, as in a crash or a network cut."""
        assert self._pg_ctl
        self._run(self._pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL to the server and every process of it, as the OOM killer or a crash does."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        family = [pid, *_children(pid)]
        for member in family:
            with suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(member) for member in family):
            assert time.monotonic() < deadline, "the killed server's processes linger"
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:  # a zombie (state Z) is dead: its parent may never reap it in a container
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with suppress(OSError):
            # pid (comm) state ppid …: comm may hold spaces, so split after its ")".
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.split("/")[2]))
    return found


def available() -> bool:
    return _bin("initdb") is not None and _bin("pg_ctl") is not None


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not available():
        reason = "PostgreSQL's initdb/pg_ctl are not installed"
        if os.environ.get("SYNCSTATUS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and SYNCSTATUS_REQUIRE_SERVICES=1 requires them")
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="syncstatus-pg-") as folder:
        cluster = PrivatePostgres(Path(folder))
        cluster.start()
        try:
            yield cluster
        finally:
            with suppress(RuntimeError):  # already stopped
                cluster.stop()
