"""Access to the real PostgreSQL and Redis of this machine for the tests that need them.

Where a service is missing, its tests skip with the reason; with SYNCSTATUS_REQUIRE_SERVICES=1
(set by .ci/run) they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "SYNCSTATUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("SYNCSTATUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    """Skip (or fail under SYNCSTATUS_REQUIRE_SERVICES=1) when the service is not reachable."""
    if _reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("SYNCSTATUS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and SYNCSTATUS_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def redis_url() -> str:
    require("Redis", "127.0.0.1", 6379)
    return REDIS_URL


def postgres_admin_url() -> str:
    require("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_ADMIN_URL
