"""Each GraphQL operation's name, type, tenant and outcome go into the request's log line
(app/ops/request_log.py) and its count and duration into the metrics (app/ops/telemetry.py)."""

from __future__ import annotations

from collections.abc import Iterator
from time import perf_counter
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from app.ops.request_log import current_request


def first_code(errors: list[Any] | None) -> str | None:
    for error in errors or ():
        code = (getattr(error, "extensions", None) or {}).get("code")
        if isinstance(code, str):
            return code
    return "INTERNAL_SERVER_ERROR" if errors else None


def record_operation(
    context: Any, name: str | None, kind: str | None, code: str | None, seconds: float
) -> None:
    principal = getattr(context, "principal_", None)
    tenant = getattr(principal, "tenant_id", None)
    record = current_request()
    if record is not None:
        record.operation(name, kind, tenant, code)
    telemetry = getattr(getattr(context, "services", None), "telemetry", None)
    if telemetry is not None:
        telemetry.operation(kind, code, seconds)


class OperationLog(SchemaExtension):
    """Listed before ErrorCodes, so it sees the errors with their contract codes."""

    def on_operation(self) -> Iterator[None]:
        started = perf_counter()
        code: str | None
        try:
            yield
        except GraphQLError as error:
            code = (error.extensions or {}).get("code") or "BAD_USER_INPUT"
            self._record(code, started)
            raise
        ctx = self.execution_context
        code = first_code(getattr(ctx.result, "errors", None) or ctx.pre_execution_errors)
        self._record(code, started)

    def _record(self, code: str | None, started: float) -> None:
        ctx = self.execution_context
        try:
            kind: str | None = ctx.operation_type.value
        except Exception:  # no document (a syntax error) or no such operation
            kind = None
        record_operation(ctx.context, ctx.operation_name, kind, code, perf_counter() - started)
