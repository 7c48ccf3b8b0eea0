"""GET /export/sync-users.csv: the users a filter selects, as RFC 4180 CSV (UTF-8, a header
row, CRLF), streamed in keyset batches, so a million rows take the memory of one batch.

The token comes in the Authorization header only (a token in a URL ends up in logs and
browser history); the filter comes as query parameters, checked like SyncUserFilter's fields
before anything is sent. Cells a spreadsheet would read as a formula are neutralised."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.auth.rate_limit import over_budget
from app.auth.tokens import bearer_token
from app.domain import validation
from app.domain.errors import BadUserInput, ServiceError, ServiceUnavailable, Unauthenticated
from app.domain.ids import decode_id
from app.domain.roles import Role
from app.domain.timeutil import OutOfRange, from_micros, now_micros, parse_iso, to_micros
from app.domain.views import PolicyView
from app.ops.outage import MESSAGE as OUTAGE_MESSAGE
from app.ops.outage import RETRY_AFTER_SECONDS as OUTAGE_RETRY_AFTER_SECONDS
from app.ops.outage import is_outage
from app.ops.request_log import current_request
from app.reads.runs import policies_by_ids, runs_by_ids
from app.reads.user_batches import user_batches
from app.reads.users import ORDERS, STATUSES, UserFilter, check_filter
from app.web.export_slots import ExportSlots
from app.web.services import Services, services_of

log = logging.getLogger("syncstatus.export")
HEADER = (
    "email",
    "destination_email",
    "policy",
    "status",
    "latest_sync_at",
    "next_scheduled_sync_at",
    "error_code",
    "error_message",
    "unresolved_failure_count",
)
PARAMETERS = frozenset(
    {
        "emailContains",
        "latestSyncFrom",
        "latestSyncTo",
        "policyId",
        "status",
        "errorCode",
        "orderBy",
    }
)
BATCH = 1000
RETRY_AFTER_SECONDS = 5  # when the export slots are taken (app/web/export_slots.py)
# Spent from the token's rate budget (app/auth/rate_limit.py) by each export: what a page of
# the largest size costs over GraphQL, so an exhausted budget exports nothing either.
EXPORT_COST = 100
FORMULA_STARTS = frozenset("=+-@\t\r")
STATUS_OF = {
    "BAD_USER_INPUT": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "RATE_LIMITED": 429,
    "SERVICE_UNAVAILABLE": 503,
}


def neutralise(cell: str) -> str:
    """A cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading
    apostrophe, which spreadsheets show as text (OWASP's CSV injection advice)."""
    return "'" + cell if cell and cell[0] in FORMULA_STARTS else cell


def _time(micros: int | None) -> str:
    if micros is None:
        return ""
    return from_micros(micros).isoformat().replace("+00:00", "Z")


def _datetime(value: str, name: str) -> int:
    if len(value) > 64:
        raise BadUserInput(f"{name} is not an ISO 8601 date and time.")
    try:
        return to_micros(parse_iso(value))  # as the DateTime scalar reads it
    except OutOfRange:
        raise BadUserInput(f"{name} is out of range in UTC: {value!r}.") from None
    except ValueError:
        raise BadUserInput(f"{name} is not an ISO 8601 date and time: {value!r}.") from None


def parse_query(pairs: Sequence[tuple[str, str]]) -> tuple[UserFilter, str]:
    """The filter and order from the query string; BAD_USER_INPUT for an unknown or repeated
    parameter or a bad value. An empty value means "not set", as an unfilled form sends it."""
    values: dict[str, str] = {}
    for key, value in pairs:
        if key not in PARAMETERS:
            raise BadUserInput(f"Unknown parameter {key!r}; expected {sorted(PARAMETERS)}.")
        if key in values:
            raise BadUserInput(f"Parameter {key!r} is given twice.")
        values[key] = validation.storable(value, key)
    given = {key: value for key, value in values.items() if value != ""}
    status = given.get("status")
    if status is not None and status not in STATUSES:
        raise BadUserInput(f"Unknown status {status!r}.")
    order = given.get("orderBy", "EMAIL_ASC")
    if order not in ORDERS:
        raise BadUserInput(f"Unknown orderBy {order!r}; expected {sorted(ORDERS)}.")
    code = given.get("errorCode")
    filt = UserFilter(
        email_contains=given.get("emailContains"),
        latest_sync_from=_datetime(given["latestSyncFrom"], "latestSyncFrom")
        if "latestSyncFrom" in given
        else None,
        latest_sync_to=_datetime(given["latestSyncTo"], "latestSyncTo")
        if "latestSyncTo" in given
        else None,
        policy_id=decode_id(given["policyId"], "Policy") if "policyId" in given else None,
        status=status,
        error_code=validation.error_code(code) if code is not None else None,
    )
    check_filter(filt)
    _ = filt.term  # checks emailContains
    return filt, order


def _next_sync(row: Any, policy: PolicyView | None, now: int) -> int | None:
    if policy is None or not policy.active:
        return None
    if row.sync_requested or row.latest_sync_at is None:
        return now
    return int(row.due_at) if row.due_at is not None else None


def csv_lines(cells: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: CRLF, quotes doubled
    writer.writerows([[neutralise(cell) for cell in row] for row in cells])
    return out.getvalue()


async def _rows(
    services: Services, tenant_id: int, filt: UserFilter, order: str
) -> AsyncIterator[bytes]:
    db = services.db
    policies: dict[int, PolicyView] = {}
    now = now_micros()
    # The header goes out with the first batch, so that the response starts only once the
    # database answered (export_sync_users reads that first chunk before it responds).
    head = csv_lines([HEADER]).encode()
    async for rows in user_batches(db, tenant_id, filt, order, BATCH):
        wanted = sorted({r.policy_id for r in rows if r.policy_id and r.policy_id not in policies})
        failed = [r.last_finished_run_id for r in rows if r.error_code and r.last_finished_run_id]
        async with db.read() as session:
            if wanted:
                policies.update(await policies_by_ids(session, tenant_id, wanted))
            runs = await runs_by_ids(session, tenant_id, failed) if failed else {}
        lines = []
        for row in rows:
            policy = policies.get(row.policy_id) if row.policy_id else None
            run = runs.get(row.last_finished_run_id) if row.error_code else None
            lines.append(
                (
                    row.email,
                    row.destination_email,
                    policy.name if policy else "",
                    row.status,
                    _time(row.latest_sync_at),
                    _time(_next_sync(row, policy, now)),
                    row.error_code or "",
                    (run.error_message or "") if run else "",
                    str(row.unresolved_failure_count),
                )
            )
        yield head + csv_lines(lines).encode()
        head = b""
    if head:  # no users
        yield head


def _error(error: ServiceError) -> Response:
    _record(None, error.code)
    status = STATUS_OF.get(error.code, 400)
    headers = {}
    extensions: dict[str, Any] = {"code": error.code}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
        extensions["retryAfterSeconds"] = error.retry_after
    if status == 503:
        headers["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
    body = {"errors": [{"message": error.message, "extensions": extensions}]}
    return JSONResponse(body, status_code=status, headers=headers)


class RateLimited(ServiceError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _record(tenant: int | None, outcome: str | None) -> None:
    """The tenant and outcome on the request's access log line, as GraphQL requests have."""
    record = current_request()
    if record is None:
        return
    if tenant is not None:
        record.tenant = tenant
    if outcome is not None:
        record.outcome = outcome


async def export_sync_users(request: Request) -> Response:
    """The export, or an error before any of it is sent: bad input, the token, its budget,
    the slots taken, or an outage (503 with Retry-After, as GraphQL answers one) up to the
    first batch. An outage after that ends the stream unfinished (no final chunk), which
    clients report as a truncated download rather than a complete file."""
    try:
        return await _export(request)
    except Exception as error:
        if not is_outage(error):
            raise
        log.warning("export failed: the database is unreachable (%s)", error)
        return _error(ServiceUnavailable(OUTAGE_MESSAGE))


async def _export(request: Request) -> Response:
    services = services_of(request)
    try:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise Unauthenticated("An API token is required (Authorization: Bearer <token>).")
        principal = await services.authenticator.authenticate(token)
        _record(principal.tenant_id, None)
        principal.require(Role.VIEWER)
        filt, order = parse_query(request.query_params.multi_items())
        limiter = services.rate_limiter
        retry_after = await limiter.spend(principal.token_id, EXPORT_COST) if limiter else None
        if retry_after is not None:
            raise RateLimited(over_budget(retry_after), retry_after)
        if not services.exports.take():
            raise RateLimited("Other exports are running; retry in a few seconds.")
    except ServiceError as error:
        return _error(error)
    _record(principal.tenant_id, "ok")
    # The filter's fields, not their values: a search term is part of someone's email.
    given = [name for name, value in dataclasses.asdict(filt).items() if value is not None]
    log.info("export tenant=%s filters=%s order=%s", principal.tenant_id, given, order)
    rows = _rows(services, principal.tenant_id, filt, order)
    try:
        first = await anext(rows)
    except BaseException:
        services.exports.give_back()
        raise
    return _Export(
        _after(first, rows),
        services.exports,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="sync-users.csv"',
            "Cache-Control": "no-store",
        },
    )


async def _after(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


class _Export(StreamingResponse):
    """The CSV stream, which gives its export slot back however the response ends: streamed,
    failed, or cancelled by a client that left (even before the first row, when a generator's
    own `finally` would never run)."""

    def __init__(self, content: AsyncIterator[bytes], slots: ExportSlots, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()
