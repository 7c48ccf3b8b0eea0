"""GraphQL over HTTP conformance: graphql-http's own audit suite (serverAudits) against a real
server. ./dev's test setup installs the package into .tools/graphql-http (git-ignored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.server import ROOT, Server

PACKAGE = ROOT / ".tools" / "graphql-http" / "node_modules" / "graphql-http"
SCRIPT = Path(__file__).with_name("audit.cjs")


def _missing(reason: str) -> None:
    if os.environ.get("SYNCSTATUS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and SYNCSTATUS_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def test_every_must_and_should_audit_passes(server: Server) -> None:
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed")
    if not (PACKAGE / "package.json").exists():
        _missing(f"graphql-http is not installed in {PACKAGE} (./dev test installs it)")
    done = subprocess.run(
        [str(node), str(SCRIPT), str(PACKAGE), server.graphql_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = json.loads(done.stdout)
    counts = Counter((r["name"].split()[0], r["status"]) for r in results)
    failed = [
        f"{r['status']}: {r['name']}: {r['reason']}"
        for r in results
        if r["name"].split()[0] in ("MUST", "SHOULD") and r["status"] != "ok"
    ]
    assert not failed, failed
    assert counts[("MUST", "ok")] >= 10 and counts[("SHOULD", "ok")] >= 20, counts
    print(f"graphql-http audits: {dict(counts)}")
