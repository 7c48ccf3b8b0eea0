"""The resources one process holds, created in the lifespan (never at import time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.auth.sockets import TokenSockets
from app.auth.tokens import Authenticator
from app.events.messages import Publisher
from app.store.engine import Database
from app.web.settings import Settings
from app.webhooks.secret_box import SecretBox
from app.webhooks.settings import WebhookSettings


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    broadcast: Any  # broadcaster.Broadcast
    publisher: Publisher
    authenticator: Authenticator
    # The subscription fan-out of this process (subscriptions.hub.Hub), set by the app factory.
    hub: Any = field(default=None)
    # The token budgets (app.auth.rate_limit.RateLimiter), set by the app factory.
    rate_limiter: Any = field(default=None)
    # This app's Prometheus metrics (app.ops.telemetry.Telemetry), if any.
    telemetry: Any = field(default=None)
    # This process's open WebSockets per API token (closed when the token is revoked).
    sockets: TokenSockets = field(default_factory=TokenSockets)
    # Webhooks: the key that seals signing secrets (None: none configured) and the settings.
    secret_box: SecretBox | None = None
    webhook_settings: WebhookSettings = field(default_factory=WebhookSettings)
    deliverer: Any = field(default=None)  # app.webhooks.deliverer.Deliverer, set by the app
