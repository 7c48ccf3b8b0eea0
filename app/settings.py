"""Settings from the environment (12-factor); nothing is required."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./syncstatus.db"
DEFAULT_BROADCAST_URL = "memory://"
N = TypeVar("N", int, float)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broadcast_url: str = DEFAULT_BROADCAST_URL
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line
    retention_days: int = 90  # finished runs older than this are pruned; 0 keeps all
    shutdown_timeout: float = 10.0  # seconds a SIGTERM waits for in-flight work
    # Each process looks for revoked tokens in the database this often (0: only broker events).
    revocation_poll_seconds: float = 1.0

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("SYNCSTATUS_DATABASE_URL", DEFAULT_DATABASE_URL),
            broadcast_url=env.get("SYNCSTATUS_BROADCAST_URL", DEFAULT_BROADCAST_URL),
            host=env.get("SYNCSTATUS_HOST", "127.0.0.1"),
            port=int(env.get("SYNCSTATUS_PORT", "8000")),
            log_level=env.get("SYNCSTATUS_LOG_LEVEL", "info"),
            log_format=_choice(env, "SYNCSTATUS_LOG_FORMAT", "text", ("text", "json")),
            retention_days=_number(env, "SYNCSTATUS_RETENTION_DAYS", 90, int),
            shutdown_timeout=_number(env, "SYNCSTATUS_SHUTDOWN_TIMEOUT", 10.0, float),
            revocation_poll_seconds=float(env.get("SYNCSTATUS_REVOCATION_POLL_SECONDS", "1")),
        )


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:  # type: ignore[operator]
        raise ValueError(f"{name} must not be negative, not {raw!r}")
    return value
