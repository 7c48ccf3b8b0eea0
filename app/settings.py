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
    # Browser-facing security (app/browser_security.py): origins other than the service's own
    # that may call the API from a page, and who may embed the page in a frame.
    cors_origins: tuple[str, ...] = ()
    frame_ancestors: str = "'self'"
    graphiql_dir: str = ""  # GraphiQL's installed npm packages; "" = graphiql/node_modules
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
            cors_origins=tuple(
                o.strip() for o in env.get("SYNCSTATUS_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            frame_ancestors=env.get("SYNCSTATUS_FRAME_ANCESTORS", "'self'").strip() or "'self'",
            graphiql_dir=env.get("SYNCSTATUS_GRAPHIQL_DIR", ""),
            revocation_poll_seconds=float(env.get("SYNCSTATUS_REVOCATION_POLL_SECONDS", "1")),
        )
