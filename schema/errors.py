"""Every error gets a contract code: ours keep theirs, request errors (syntax, validation,
bad variables) are BAD_USER_INPUT, anything unexpected is masked and logged in full."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from app.domain.errors import ServiceError
from app.ops.outage import MESSAGE as OUTAGE_MESSAGE
from app.ops.outage import is_outage
from app.ops.request_log import current_request

log = logging.getLogger("syncstatus.errors")
UNEXPECTED = "Unexpected error."


def classify(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    extensions: dict[str, object] = {}
    if isinstance(original, ServiceError):
        code, message = original.code, original.message
    elif is_outage(original):
        log.warning("service unavailable at %s: %r", error.path, original)
        code, message = "SERVICE_UNAVAILABLE", OUTAGE_MESSAGE
    elif original is None or error.path is None:
        if error.extensions and "code" in error.extensions:
            return error
        code, message = "BAD_USER_INPUT", error.message
    else:
        log.error("unexpected error at %s", error.path, exc_info=original)
        code, message = "INTERNAL_SERVER_ERROR", UNEXPECTED
        # An id the user can quote; the log line of the request has it too.
        record = current_request()
        if record is not None:
            extensions["requestId"] = record.request_id
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), **extensions, "code": code},
    )


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as error:
            # Raised through this hook, not returned (a syntax error found by the parser cache):
            # strawberry makes the result of it afterwards, so give it its code now.
            raise classify(error) from None
        except Exception as error:
            # An outage met by a later extension's hook, not by a resolver: the rate limit
            # reads the token, which needs the database. Strawberry would answer its bare
            # message (an errno) without a code and with HTTP 200. Anything else goes on to
            # Strawberry: it turns its own exceptions (an unknown operation name, a mutation
            # over GET) into HTTP 400.
            if not is_outage(error):
                raise
            raise classify(GraphQLError(str(error), original_error=error)) from None
        _classify_result(self.execution_context.result)

    def on_stream_result(self, result: object) -> Iterator[None]:
        # WebSocket operations (subscriptions above all) send each result as it is yielded,
        # before on_operation ends: give their errors codes here. classify() is idempotent.
        _classify_result(result)
        yield


def _classify_result(result: object) -> None:
    errors = getattr(result, "errors", None)
    if result is not None and errors:
        result.errors = [classify(e) for e in errors]  # type: ignore[attr-defined]
