"""Where the test suite's CPU goes: runs pytest (by default `./dev test`'s parallel phase) while
sampling /proc four times a second, and charges each process's CPU to the test its xdist worker
(or pytest process) is running, through the worker's children: forked servers, CLI subprocesses,
Chromium. Prints the machine's CPU and wall time, the CPU by kind of process, by test folder
and the costliest test files. Linux only.

    .venv/bin/python bench/suite_cpu.py                 # tests/, -n 4, serial tests excluded
    .venv/bin/python bench/suite_cpu.py -- tests/page -n 2

CPU of processes outside a worker's tree (PostgreSQL's backends, the xdist controller, this
sampler) is shown as "other: <command>". A process's CPU between two samples goes to the test
its worker ran at the second one, so short tests next to long ones blur a little.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
DEFAULT_ARGS = ["-n", "4", "--dist", "loadscope", "--serial=exclude", "-q"]
# Loaded in pytest and every xdist worker: each writes the test it starts to <dir>/<pid>.
PLUGIN = """
import os
def pytest_runtest_logstart(nodeid, location):
    with open(os.path.join(os.environ["SUITE_CPU_DIR"], str(os.getpid())), "w") as f:
        f.write(nodeid)
"""


def _processes() -> dict[int, tuple[int, float, str, int]]:
    """pid: (parent pid, CPU seconds so far, command name, start time: with the pid, one
    process; a kernel worker's name changes with its work)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name_end = stat.rfind(")")
            fields = stat[name_end + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            name = stat[stat.find("(") + 1 : name_end]
            found[int(entry)] = (int(fields[1]), cpu, name, int(fields[19]))
    return found


def _kind(pid: int, command: str, pytest: int, parent: int) -> str:
    if pytest in (pid, parent):  # xdist's workers run as `python -c ...`
        return "pytest and its workers"
    if command.startswith("kworker"):
        return "the kernel's workers"
    if command == "postgres":  # its backends' command lines name our syncstatus_* databases
        return "postgres"
    try:
        line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return command
    if "forkserver" in line:
        return "forked servers"
    if "app.cli" in line or "syncstatus" in line:
        return "CLI subprocesses"
    if "pytest" in line or "execnet" in line or "xdist" in line:
        return "pytest and its workers"
    return command


def _outside(pid: int, kind: str) -> str:
    """What CPU outside any test is charged to."""
    if pid == os.getpid():
        return "other: this sampler"
    if kind == "pytest and its workers":
        return "other: pytest between tests (collection, start-up)"
    return f"other: {kind}"


def sample(current: Path, pytest: int, stop: threading.Event) -> tuple[Counter[str], Counter[str]]:
    by_test: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    seen: dict[tuple[int, int], float] = {}
    kinds: dict[tuple[int, int], str] = {}
    first = True
    while not stop.wait(0.25):
        processes = _processes()
        running = {}
        for entry in current.iterdir():
            with contextlib.suppress(OSError, ValueError):
                running[int(entry.name)] = entry.read_text()
        for pid, (parent, cpu, command, start) in processes.items():
            key = (pid, start)
            spent = cpu - seen.get(key, 0.0 if not first else cpu)
            seen[key] = cpu
            if spent <= 0:
                continue
            ancestor, test = pid, None
            for _ in range(40):
                if ancestor in running:
                    test = running[ancestor]
                    break
                if ancestor not in processes or ancestor <= 1:
                    break
                ancestor = processes[ancestor][0]
            if key not in kinds:
                kinds[key] = _kind(pid, command, pytest, parent)
            # CPU seconds are floats: Counter sums them, though typeshed types counts as int.
            by_test[test or _outside(pid, kinds[key])] += spent  # type: ignore[assignment]
            by_kind[kinds[key]] += spent  # type: ignore[assignment]
        first = False
    return by_test, by_kind


def _machine() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments")
    options = parser.parse_args()
    args = options.pytest_args or ["tests", *DEFAULT_ARGS]
    with tempfile.TemporaryDirectory(prefix="suite-cpu-") as folder:
        current = Path(folder, "current")
        current.mkdir()
        Path(folder, "suite_cpu_plugin.py").write_text(PLUGIN)
        path = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "SUITE_CPU_DIR": str(current), "PYTHONPATH": path}
        stop = threading.Event()
        figures: list[tuple[Counter[str], Counter[str]]] = []
        before, started = _machine(), time.monotonic()
        command = [str(ROOT / ".venv/bin/pytest"), "-p", "suite_cpu_plugin", *args]
        pytest = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        sampler = threading.Thread(target=lambda: figures.append(sample(current, pytest.pid, stop)))
        sampler.start()
        output, _ = pytest.communicate()
        stop.set()
        sampler.join()
        wall, after = time.monotonic() - started, _machine()
    by_test, by_kind = figures[0]
    spent = [(b - a) / TICK for a, b in zip(before, after, strict=False)]
    user, system, idle = spent[0] + spent[1], spent[2], spent[3]
    lines = output.strip().splitlines()
    # The failures first (pytest's short summary), so a red run is not mistaken for a profile.
    for line in lines:
        if line.startswith(("FAILED ", "ERROR ")):
            print(line)
    print(lines[-1] if lines else "(no pytest output)")
    print(f"wall {wall:.0f} s; machine CPU: user {user:.0f} s, system {system:.0f} s,", end=" ")
    print(f"idle {idle:.0f} s")
    print("\nCPU seconds by kind of process:")
    for kind, seconds in by_kind.most_common(8):
        print(f"  {seconds:7.1f}  {kind}")
    folders: Counter[str] = Counter()
    files: Counter[str] = Counter()
    for test, seconds in by_test.items():
        file = test.split("::")[0]
        files[file] += seconds
        folders[file if file.startswith("other:") else "/".join(file.split("/")[:2])] += seconds
    print("\nCPU seconds by test folder:")
    for folder_name, seconds in folders.most_common(15):
        print(f"  {seconds:7.1f}  {folder_name}")
    print("\nThe costliest test files:")
    for file, seconds in files.most_common(20):
        print(f"  {seconds:7.1f}  {file}")
    sys.exit(pytest.returncode)


if __name__ == "__main__":
    main()
