"""Settings from the environment (12-factor); nothing is required."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./syncstatus.db"
DEFAULT_BROADCAST_URL = "memory://"
# GitHub's node count of the page's most expensive query at the largest page size is 2,600
# (100 runs with 25 failed items each): twice that, and far below the 15,000 of 150 aliases
# of syncUsers(first: 100).
DEFAULT_MAX_QUERY_COST = 5000
# Cost points per token and minute. An open page spends a few hundred a minute (a table page
# costs 10-100, a user's panel 126, its errors up to 2,601); 20,000 is 200 table pages of 100
# rows a minute, yet only four of the most expensive queries the cost limit admits (each
# blocks the process for a while: fewer of them keep other tokens' latency low).
DEFAULT_RATE_LIMIT = 20_000
# The slowest statement of `serve` at a million users is ~0.2 s (an email search's count).
DEFAULT_DATABASE_TIMEOUT_SECONDS = 10.0
# A WebSocket's unsent subscription results (subscriptions/subscriber.py: Backlog): ~3,500 of
# the page's ~300-byte updates. A page watches its visible rows (at most 100 users per
# subscription), and a reader that keeps up never holds more than the hub delivers at once (a
# policy change comes 500 users at a time); only a stuck reader reaches it.
DEFAULT_WS_BACKLOG_BYTES = 1024 * 1024
DEFAULT_WS_SEND_TIMEOUT = 30.0
# A WebSocket must send connection_init this soon after it opens, or it is closed with 4408.
DEFAULT_WS_INIT_TIMEOUT_SECONDS = 5.0
# The server's graphql-transport-ws ping of each acknowledged connection: well below the idle
# timeout of a proxy in between (nginx's and an AWS load balancer's default: 60 s), so that none
# drops a dashboard that has nothing to receive.
DEFAULT_WS_PING_SECONDS = 15.0
# A worker that died (or whose claim's answer was lost) leaves its run RUNNING: an hour without
# a report ends it. Workers report far more often than that while they work.
DEFAULT_RUN_TIMEOUT_SECONDS = 3600.0

N = TypeVar("N", int, float)
# Above this a number is a typo, and some overflow (1e300 seconds in a timedelta).
MAX_SETTING = 1_000_000_000
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broadcast_url: str = DEFAULT_BROADCAST_URL
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # Browser-facing security (app/web/browser_security.py): origins other than the service's own
    # that may call the API from a page, and who may embed the page in a frame.
    cors_origins: tuple[str, ...] = ()
    frame_ancestors: str = "'self'"
    graphiql_dir: str = ""  # GraphiQL's installed npm packages; "" = graphiql/node_modules
    max_query_cost: int = DEFAULT_MAX_QUERY_COST  # 0: no cost limit
    rate_limit: int = DEFAULT_RATE_LIMIT  # cost points per token and minute; 0: off
    log_format: str = "text"  # or "json": one JSON object per line
    retention_days: int = 90  # finished runs older than this are pruned; 0 keeps all
    shutdown_timeout: float = 10.0  # seconds a SIGTERM waits for in-flight work
    # Each process looks for revoked tokens in the database this often (0: only broker events).
    revocation_poll_seconds: float = 1.0
    # A WebSocket whose send has waited this long (its client stopped reading) is closed with
    # 4413; 0: never.
    ws_send_timeout: float = DEFAULT_WS_SEND_TIMEOUT
    # A WebSocket that has not sent connection_init this long after opening is closed with 4408.
    ws_init_timeout_seconds: float = DEFAULT_WS_INIT_TIMEOUT_SECONDS
    # How often the server pings each acknowledged WebSocket.
    ws_ping_seconds: float = DEFAULT_WS_PING_SECONDS
    # Unsent results one WebSocket may hold before it gets coalesced state; 0: no budget.
    ws_backlog_bytes: int = DEFAULT_WS_BACKLOG_BYTES
    # Events are kept this long in the event log (not with memory://), to be replayed by a
    # process whose broker lost them.
    event_log_seconds: int = 600
    # While the broker is down, subscriptions go on (fed from the event log) this long; then
    # they end with SERVICE_UNAVAILABLE and the client refetches.
    broker_grace_seconds: float = 60.0
    # A RUNNING run with no report (nor start) for this long is ended as FAILED with
    # WORKER_LOST by the reaper in each `serve` process (app/ops/run_reaper.py); 0: never.
    run_timeout_seconds: float = DEFAULT_RUN_TIMEOUT_SECONDS
    # PostgreSQL: a connect, a pooled connection's wait or one statement that takes longer ends
    # with SERVICE_UNAVAILABLE, so a silent network (no reset, no refusal) cannot hang
    # requests, background tasks or shutdown; 0: no limit (the drivers' own: none).
    database_timeout_seconds: float = DEFAULT_DATABASE_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("SYNCSTATUS_DATABASE_URL", DEFAULT_DATABASE_URL),
            broadcast_url=env.get("SYNCSTATUS_BROADCAST_URL", DEFAULT_BROADCAST_URL),
            # Blank is unset, as for every setting: not "" (every interface) for /metrics.
            host=env.get("SYNCSTATUS_HOST", "").strip() or "127.0.0.1",
            port=_port(env, "SYNCSTATUS_PORT"),
            log_level=_choice(env, "SYNCSTATUS_LOG_LEVEL", "info", LOG_LEVELS),
            cors_origins=tuple(
                o.strip() for o in env.get("SYNCSTATUS_CORS_ORIGINS", "").split(",") if o.strip()
            ),
            frame_ancestors=env.get("SYNCSTATUS_FRAME_ANCESTORS", "'self'").strip() or "'self'",
            graphiql_dir=env.get("SYNCSTATUS_GRAPHIQL_DIR", ""),
            max_query_cost=env_number(
                env, "SYNCSTATUS_MAX_QUERY_COST", DEFAULT_MAX_QUERY_COST, int
            ),
            rate_limit=env_number(env, "SYNCSTATUS_RATE_LIMIT", DEFAULT_RATE_LIMIT, int),
            log_format=_choice(env, "SYNCSTATUS_LOG_FORMAT", "text", ("text", "json")),
            retention_days=env_number(env, "SYNCSTATUS_RETENTION_DAYS", 90, int),
            shutdown_timeout=env_number(env, "SYNCSTATUS_SHUTDOWN_TIMEOUT", 10.0, float),
            database_timeout_seconds=env_number(
                env,
                "SYNCSTATUS_DATABASE_TIMEOUT_SECONDS",
                DEFAULT_DATABASE_TIMEOUT_SECONDS,
                float,
            ),
            revocation_poll_seconds=env_number(
                env, "SYNCSTATUS_REVOCATION_POLL_SECONDS", 1.0, float
            ),
            ws_send_timeout=env_number(
                env, "SYNCSTATUS_WS_SEND_TIMEOUT", DEFAULT_WS_SEND_TIMEOUT, float
            ),
            ws_init_timeout_seconds=_positive(
                env, "SYNCSTATUS_WS_INIT_TIMEOUT_SECONDS", DEFAULT_WS_INIT_TIMEOUT_SECONDS
            ),
            ws_ping_seconds=_positive(env, "SYNCSTATUS_WS_PING_SECONDS", DEFAULT_WS_PING_SECONDS),
            ws_backlog_bytes=env_number(
                env, "SYNCSTATUS_WS_BACKLOG_BYTES", DEFAULT_WS_BACKLOG_BYTES, int
            ),
            event_log_seconds=env_number(env, "SYNCSTATUS_EVENT_LOG_SECONDS", 600, int),
            broker_grace_seconds=env_number(env, "SYNCSTATUS_BROKER_GRACE_SECONDS", 60.0, float),
            run_timeout_seconds=env_number(
                env, "SYNCSTATUS_RUN_TIMEOUT_SECONDS", DEFAULT_RUN_TIMEOUT_SECONDS, float
            ),
        )


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def env_number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    """The variable's number (`default` when unset or blank); ValueError naming it when it is
    not a finite number from 0 to MAX_SETTING."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {raw!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, not {raw!r}")
    if value > MAX_SETTING:
        raise ValueError(f"{name} must be at most {MAX_SETTING}, not {raw!r}")
    return value


def is_port(number: int) -> bool:
    return 1 <= number <= 65535


def _port(env: Mapping[str, str], name: str) -> int:
    port = env_number(env, name, 8000, int)
    if not is_port(port):
        raise ValueError(f"{name} must be a port from 1 to 65535, not {env.get(name)!r}")
    return port


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds that cannot be 0: no timeout or interval of that length makes sense (a 0 ping
    interval would ping without pause)."""
    value = env_number(env, name, default, float)
    if value == 0:
        raise ValueError(f"{name} must be more than 0, not {env.get(name)!r}")
    return value
