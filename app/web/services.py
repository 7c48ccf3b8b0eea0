"""The resources one process holds, created in the lifespan (never at import time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from starlette.requests import HTTPConnection

from app.auth.sockets import TokenSockets
from app.auth.tokens import Authenticator
from app.events.messages import Publisher
from app.ops.runtime import Collector
from app.reads.search_cache import SearchCache
from app.reads.search_matches import ENTRIES as MATCH_LISTS
from app.store.engine import Database
from app.web.export_slots import ExportSlots
from app.web.settings import Settings
from app.webhooks.secret_box import SecretBox
from app.webhooks.settings import WebhookSettings

if TYPE_CHECKING:  # the hub is subscriptions' (imports run one way); the rest avoid cycles
    from broadcaster import Broadcast

    from app.auth.rate_limit import RateLimiter
    from app.ops.probes import Readiness
    from app.ops.telemetry import Telemetry
    from app.webhooks.deliverer import Deliverer
    from subscriptions.hub import Hub


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    broadcast: Broadcast
    publisher: Publisher
    authenticator: Authenticator
    # The subscription fan-out of this process, set by the app factory.
    hub: Hub | None = None
    # The token budgets, set by the app factory.
    rate_limiter: RateLimiter | None = None
    # This app's Prometheus metrics, if any.
    telemetry: Telemetry | None = None
    # This process's open WebSockets per API token (closed when the token is revoked).
    sockets: TokenSockets = field(default_factory=TokenSockets)
    # Webhooks: the key that seals signing secrets (None: none configured) and the settings.
    secret_box: SecretBox | None = None
    webhook_settings: WebhookSettings = field(default_factory=WebhookSettings)
    deliverer: Deliverer | None = None  # set by the app factory when webhooks deliver here
    # Exact counts of email searches under each tenant's emails revision (this database's).
    search_counts: SearchCache = field(default_factory=SearchCache)
    # PostgreSQL: a rare search's matches in email order, kept the same way (its pages).
    search_matches: SearchCache = field(default_factory=lambda: SearchCache(MATCH_LISTS))
    # Times the collector's pauses (/healthz) and freezes survivors of a long one; installed
    # by the lifespan once the loop runs.
    collector: Collector = field(default_factory=Collector)
    # CSV exports running now (app/web/csv_export.py).
    exports: ExportSlots = field(default_factory=ExportSlots)


class AppState(TypedDict):
    """What the lifespan yields. Starlette copies it into the scope of every request and
    WebSocket, where `services_of` reads it."""

    services: Services
    readiness: Readiness  # /readyz's checks of this process's database and broker


def services_of(connection: HTTPConnection) -> Services:
    services: Services = connection.state.services
    return services
