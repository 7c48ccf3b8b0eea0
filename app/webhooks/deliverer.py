"""The webhook deliverer: a background loop in each API process that sends due deliveries of the
outbox (app.webhooks.outbox) and records each attempt's outcome.

- Claiming moves a delivery's next_attempt_at past the attempt's end (its lease) in a write
  transaction; on PostgreSQL with FOR UPDATE SKIP LOCKED, so several processes never claim the
  same delivery at once. A process that dies mid-attempt leaves the delivery due again once the
  lease ends: at least once, never lost.
- Concurrency per endpoint is bounded (a semaphore, and at most twice that many claimed), and so
  is the total, so a storm of failures is a steady trickle to each receiver; every attempt has
  a deadline, and a slow receiver holds only its own slots.
- Each attempt resolves the host again, refuses internal addresses (unless allowed) and connects
  to the address vetted, with the original Host header and TLS name. Redirects are not followed.
- Outcomes are written in batches (one transaction per loop turn), off the run lifecycle's path.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httpx
from sqlalchemy import Connection, Table, bindparam, func, select, update

from app.domain.errors import BadUserInput
from app.domain.ids import encode_id
from app.domain.timeutil import now_micros
from app.ops.outage import OutageLog
from app.store.engine import Database
from app.store.models import Webhook, WebhookDelivery
from app.webhooks import urls
from app.webhooks.registry import sealing_context
from app.webhooks.secret_box import SecretBox
from app.webhooks.settings import WebhookSettings

log = logging.getLogger("syncstatus.webhooks")
MICROS = 1_000_000
MAX_IN_FLIGHT = 256  # attempts of this process at once, over all endpoints
CANDIDATES = 2000  # due deliveries ranked per claim (bounds the claim's work in a storm)
MAX_ENDPOINTS = 512  # idle endpoint clients beyond this are closed
MIN_TURN_SECONDS = 0.05  # pokes within this coalesce into one claim
USER_AGENT = "syncstatus-webhooks/1"

deliveries = cast(Table, WebhookDelivery.__table__)
webhooks = cast(Table, Webhook.__table__)

_due = (
    select(deliveries.c.id, deliveries.c.webhook_id, deliveries.c.next_attempt_at)
    .where(
        deliveries.c.next_attempt_at <= bindparam("now"),
        deliveries.c.webhook_id.not_in(bindparam("busy", expanding=True)),
    )
    .order_by(deliveries.c.next_attempt_at)
    .limit(bindparam("candidates"))
    .subquery("due")
)
_ranked = select(
    _due.c.id,
    func.row_number()
    .over(partition_by=_due.c.webhook_id, order_by=(_due.c.next_attempt_at, _due.c.id))
    .label("rank"),
).subquery("ranked")
# Up to `per_endpoint` due deliveries per webhook, oldest first, in one read.
CANDIDATE_IDS = (
    select(_ranked.c.id).where(_ranked.c.rank <= bindparam("per_endpoint")).limit(bindparam("n"))
)


def _claim_statement(postgres: bool) -> Any:
    still_due = select(deliveries.c.id).where(
        deliveries.c.id.in_(bindparam("ids", expanding=True)),
        deliveries.c.next_attempt_at <= bindparam("now"),
    )
    if postgres:
        still_due = still_due.with_for_update(skip_locked=True)
    return (
        update(deliveries)
        .where(deliveries.c.id.in_(still_due.scalar_subquery()))
        .values(next_attempt_at=bindparam("lease_until"))
        .returning(
            deliveries.c.id,
            deliveries.c.webhook_id,
            deliveries.c.payload,
            deliveries.c.attempts,
            deliveries.c.created_at,
        )
    )


CLAIM = {"postgresql": _claim_statement(True), "sqlite": _claim_statement(False)}
ENDPOINTS = select(
    webhooks.c.id, webhooks.c.tenant_id, webhooks.c.url, webhooks.c.secret_sealed
).where(webhooks.c.id.in_(bindparam("ids", expanding=True)))
RECORD = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("delivery_id"), deliveries.c.delivered_at.is_(None))
    .values(
        attempts=bindparam("attempts"),
        last_status_code=bindparam("status"),
        delivered_at=bindparam("delivered_at"),
        next_attempt_at=bindparam("next_at"),
    )
)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    webhook_id: int
    payload: str
    attempts: int
    created_at: int


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery: Claimed
    status: int | None
    at: int

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def sign(secret: bytes, message_id: str, timestamp: int, body: str) -> str:
    """Standard Webhooks: "v1," + base64 HMAC-SHA256 of "<id>.<timestamp>.<body>"."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


def retry_delay(settings: WebhookSettings, attempts: int) -> float:
    """Exponential backoff with jitter: about first * 2^(attempts-1), capped, times 0.5..1."""
    base = min(
        settings.first_retry_seconds * 2 ** min(attempts - 1, 40),
        settings.max_retry_delay_seconds,
    )
    return base * random.uniform(0.5, 1.0)


def next_attempt(settings: WebhookSettings, outcome: Outcome) -> int | None:
    """When to try again; None once delivered or given up (the retry window has passed)."""
    if outcome.delivered:
        return None
    if outcome.at - outcome.delivery.created_at >= settings.give_up_after_seconds * MICROS:
        return None
    delay = retry_delay(settings, outcome.delivery.attempts + 1)
    return outcome.at + int(delay * MICROS)


class _Endpoint:
    """One webhook's client, concurrency bound and signing key."""

    def __init__(self, url: str, sealed: str, key: bytes | None, settings: WebhookSettings) -> None:
        self.url = url
        self.sealed = sealed
        self.key = key
        self.slots = asyncio.Semaphore(settings.per_endpoint_concurrency)
        self.outstanding = 0  # claimed and not finished
        limit = settings.per_endpoint_concurrency
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.attempt_timeout_seconds),
            follow_redirects=False,
            trust_env=False,  # no proxies from the environment: we connect to the vetted address
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            headers={"user-agent": USER_AGENT},
        )


class Deliverer:
    def __init__(
        self,
        db: Database,
        box: SecretBox | None,
        settings: WebhookSettings,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._db = db
        # Each attempt's outcome ("delivered", "retrying", "given_up"), e.g. for a metric.
        self._on_outcome = on_outcome
        self._box = box
        self._settings = settings
        self._endpoints: dict[int, _Endpoint] = {}
        self._retired: list[_Endpoint] = []
        self._outcomes: list[Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        # The lease: an attempt waits for its endpoint's slot (at most one attempt's time, as at
        # most twice the slots are claimed) and then takes at most the deadline.
        self._lease_micros = int((2 * settings.attempt_timeout_seconds + 10) * MICROS)
        self._failures = OutageLog(log, "webhook delivery")

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._turn()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._failures.failed(error)
                    await asyncio.sleep(self._settings.poll_seconds * 4)
                else:
                    self._failures.succeeded()
                await asyncio.sleep(MIN_TURN_SECONDS)
                try:
                    async with asyncio.timeout(self._settings.poll_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for endpoint in [*self._endpoints.values(), *self._retired]:
                await endpoint.client.aclose()

    def poke(self) -> None:
        """Look for due deliveries now (this process just committed a run's finish)."""
        self._wake.set()

    async def _turn(self) -> None:
        await self._record_outcomes()
        room = MAX_IN_FLIGHT - len(self._tasks)
        if room <= 0:
            return
        claimed = await self._claim(room)
        if not claimed:
            return
        await self._load_endpoints({c.webhook_id for c in claimed})
        for delivery in claimed:
            endpoint = self._endpoints.get(delivery.webhook_id)
            if endpoint is None:  # deleted meanwhile: its deliveries went with it
                continue
            endpoint.outstanding += 1
            task = asyncio.create_task(self._attempt(delivery, endpoint))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _claim(self, room: int) -> list[Claimed]:
        per_endpoint = self._settings.per_endpoint_concurrency
        # Endpoints with all their slots claimed here wait for a later turn.
        busy = [i for i, e in self._endpoints.items() if e.outstanding >= per_endpoint]
        params = {
            "now": now_micros(),
            "busy": busy,
            "candidates": CANDIDATES,
            "per_endpoint": per_endpoint,
            "n": room,
        }
        async with self._db.read() as session:
            conn = await session.connection()
            ids = [row.id for row in await conn.execute(CANDIDATE_IDS, params)]
        if not ids:
            return []
        lease_until = now_micros() + self._lease_micros

        def claim(conn: Connection) -> list[Claimed]:
            rows = conn.execute(
                CLAIM[conn.dialect.name],
                {"ids": ids, "now": now_micros(), "lease_until": lease_until},
            )
            return [Claimed(*row) for row in rows]

        return await self._db.run_write(claim)

    async def _load_endpoints(self, webhook_ids: set[int]) -> None:
        """The claimed deliveries' webhooks, read again each time: SQLite may give a deleted
        webhook's id to the next one created, which must not inherit its URL or key."""
        async with self._db.read() as session:
            conn = await session.connection()
            rows = list(await conn.execute(ENDPOINTS, {"ids": list(webhook_ids)}))
        found = {row.id for row in rows}
        for webhook_id in webhook_ids - found:
            self._retire(webhook_id)
        for row in rows:
            known = self._endpoints.get(row.id)
            if known is not None and (known.url, known.sealed) == (row.url, row.secret_sealed):
                continue
            self._retire(row.id)
            key: bytes | None = None
            if self._box is None:
                log.error("webhook %s: no server key (SYNCSTATUS_SECRET_KEY) to sign with", row.id)
            else:
                try:
                    key = self._box.open(row.secret_sealed, sealing_context(row.tenant_id))
                except ValueError:
                    log.error("webhook %s: its secret does not open with the server key", row.id)
            self._endpoints[row.id] = _Endpoint(row.url, row.secret_sealed, key, self._settings)
        if len(self._endpoints) > MAX_ENDPOINTS:
            for webhook_id, endpoint in list(self._endpoints.items()):
                if endpoint.outstanding == 0 and webhook_id not in webhook_ids:
                    self._retire(webhook_id)
        await self._close_retired()

    def _retire(self, webhook_id: int) -> None:
        endpoint = self._endpoints.pop(webhook_id, None)
        if endpoint is not None:
            self._retired.append(endpoint)

    async def _close_retired(self) -> None:
        """Closes the clients of retired endpoints once their attempts are over."""
        still = []
        for endpoint in self._retired:
            if endpoint.outstanding == 0:
                await endpoint.client.aclose()
            else:
                still.append(endpoint)
        self._retired = still

    async def _attempt(self, delivery: Claimed, endpoint: _Endpoint) -> None:
        try:
            async with endpoint.slots:
                status = await self._send(delivery, endpoint)
            self._outcomes.append(Outcome(delivery, status, now_micros()))
        finally:
            endpoint.outstanding -= 1
            self._wake.set()

    async def _send(self, delivery: Claimed, endpoint: _Endpoint) -> int | None:
        """The HTTP status of one attempt, or None when it got none."""
        if endpoint.key is None:
            return None
        message_id = encode_id("WebhookDelivery", delivery.id)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(endpoint.key, message_id, timestamp, delivery.payload),
        }
        try:
            async with asyncio.timeout(self._settings.attempt_timeout_seconds):
                target = urls.parse(endpoint.url)
                addresses = await urls.resolve(target, allow_private=self._settings.allow_private)
                headers["host"] = target.url.netloc.decode("ascii")
                extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
                for address in addresses:  # the next vetted address only if one refuses us
                    try:
                        async with endpoint.client.stream(
                            "POST",
                            target.url.copy_with(host=str(address)),
                            content=delivery.payload.encode(),
                            headers=headers,
                            extensions=extensions,
                        ) as response:  # the body is never read: nothing to buffer
                            return response.status_code
                    except httpx.ConnectError:
                        if address == addresses[-1]:
                            raise
        except BadUserInput as refused:
            log.warning("webhook %s: delivery refused: %s", delivery.webhook_id, refused.message)
        except (httpx.HTTPError, TimeoutError, OSError) as error:
            log.info("webhook %s: attempt failed: %r", delivery.webhook_id, error)
        return None

    async def _record_outcomes(self) -> None:
        if not self._outcomes:
            return
        outcomes, self._outcomes = self._outcomes, []
        params = [self._row(outcome) for outcome in outcomes]
        for outcome, row in zip(outcomes, params, strict=True):
            self._report(outcome, row["next_at"])  # the attempts happened, recorded or not

        def record(conn: Connection) -> None:
            conn.execute(RECORD, params)

        try:
            await self._db.run_write(record)
        except Exception:
            # Not recorded: each lease ends and the deliveries are sent again (at least once).
            log.exception("recording %d webhook attempts failed", len(params))

    def _row(self, outcome: Outcome) -> dict[str, Any]:
        return {
            "delivery_id": outcome.delivery.id,
            "attempts": outcome.delivery.attempts + 1,
            "status": outcome.status,
            "delivered_at": outcome.at if outcome.delivered else None,
            "next_at": next_attempt(self._settings, outcome),
        }

    def _report(self, outcome: Outcome, next_at: int | None) -> None:
        """A line for each attempt that did not deliver (ids and status, never the URL, whose
        query string may hold the receiver's secret), and the outcome to the hook."""
        delivery, attempts = outcome.delivery, outcome.delivery.attempts + 1
        answer = f"HTTP {outcome.status}" if outcome.status is not None else "no answer"
        if outcome.delivered:
            kind = "delivered"
        elif next_at is None:
            kind = "given_up"
            log.warning(
                "webhook %s: delivery %s given up after %d attempts (last: %s)",
                delivery.webhook_id,
                delivery.id,
                attempts,
                answer,
            )
        else:
            kind = "retrying"
            log.warning(
                "webhook %s: delivery %s attempt %d failed (%s); next in %.0f s",
                delivery.webhook_id,
                delivery.id,
                attempts,
                answer,
                (next_at - outcome.at) / MICROS,
            )
        if self._on_outcome is not None:
            self._on_outcome(kind)


def start_deliverer(
    db: Database,
    box: SecretBox | None,
    settings: WebhookSettings,
    on_outcome: Callable[[str], None] | None = None,
) -> tuple[Deliverer, asyncio.Task[None]]:
    deliverer = Deliverer(db, box, settings, on_outcome)
    return deliverer, asyncio.create_task(deliverer.run(), name="webhook-deliverer")
