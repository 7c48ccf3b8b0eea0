"""Webhook settings from the environment (all optional)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from app.web.settings import env_number


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    # Allow receivers on loopback, private and link-local addresses (tests, closed networks).
    allow_private: bool = False
    attempt_timeout_seconds: float = 10.0
    # Backoff: the first retry after about this long, doubling up to max_retry_delay, with jitter.
    first_retry_seconds: float = 5.0
    max_retry_delay_seconds: float = 3600.0
    # Retries go on at least this long after the event, then the delivery is given up.
    give_up_after_seconds: float = 24 * 3600.0
    per_endpoint_concurrency: int = 4
    poll_seconds: float = 0.5

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WebhookSettings:
        env = dict(os.environ) if env is None else env
        default = cls()

        def number(name: str, fallback: float) -> float:
            return env_number(env, f"SYNCSTATUS_WEBHOOK_{name}", fallback, float)

        found = cls(
            allow_private=_flag(env.get("SYNCSTATUS_WEBHOOK_ALLOW_PRIVATE")),
            attempt_timeout_seconds=number("TIMEOUT_SECONDS", default.attempt_timeout_seconds),
            first_retry_seconds=number("FIRST_RETRY_SECONDS", default.first_retry_seconds),
            max_retry_delay_seconds=number("MAX_RETRY_SECONDS", default.max_retry_delay_seconds),
            give_up_after_seconds=number("GIVE_UP_SECONDS", default.give_up_after_seconds),
            per_endpoint_concurrency=int(
                number("ENDPOINT_CONCURRENCY", default.per_endpoint_concurrency)
            ),
            poll_seconds=number("POLL_SECONDS", default.poll_seconds),
        )
        # 0 would never deliver (no attempt fits), or never wait for a receiver at all.
        for name, value in (
            ("ENDPOINT_CONCURRENCY", found.per_endpoint_concurrency),
            ("TIMEOUT_SECONDS", found.attempt_timeout_seconds),
            ("POLL_SECONDS", found.poll_seconds),
        ):
            if value <= 0:
                raise ValueError(f"SYNCSTATUS_WEBHOOK_{name} must be more than 0, not {value:g}")
        return found
