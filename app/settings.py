"""Settings from the environment (12-factor); nothing is required."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./syncstatus.db"
DEFAULT_BROADCAST_URL = "memory://"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broadcast_url: str = DEFAULT_BROADCAST_URL
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
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
            revocation_poll_seconds=float(env.get("SYNCSTATUS_REVOCATION_POLL_SECONDS", "1")),
        )
