"""Access to the real PostgreSQL and Redis of this machine for the tests that need them.

Where a service is missing, its tests skip with the reason; with SYNCSTATUS_REQUIRE_SERVICES=1
(set by .ci/run) they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket

import pytest

from tests.private_redis import PrivateRedis

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
    """A Redis of this test process's own when redis-server is installed: Pub/Sub channels
    (`syncstatus_tenant_<id>`, the revocations channel) are global to a Redis server, whatever
    the db number, so servers of two xdist workers (or of two test runs) on one Redis would see
    each other's events for tenants and tokens with the same ids. The machine's Redis is still
    required, as CI promises, and is used where redis-server is not installed."""
    require("Redis", "127.0.0.1", 6379)
    if "SYNCSTATUS_TEST_REDIS_URL" in os.environ or shutil.which("redis-server") is None:
        return REDIS_URL
    return _private_redis_url()


@functools.cache
def _private_redis_url() -> str:
    server = PrivateRedis()
    server.start()
    atexit.register(server.kill)
    return server.url


def postgres_admin_url() -> str:
    require("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_ADMIN_URL
