"""GraphQL over HTTP as the spec says: which status code, content type and headers a result
gets. With `Accept: application/graphql-response+json` a request error (parse, validation,
limits, variables: nothing ran) is a 4xx without `data`; with application/json it stays 200,
as the spec allows. An UNAUTHENTICATED error is 401 with `WWW-Authenticate: Bearer` either way,
and RATE_LIMITED 429 with Retry-After."""

from __future__ import annotations

from typing import Any

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json; charset=utf-8"
_GRAPHQL_RESPONSE = "application/graphql-response+json"
_JSON = "application/json"


def wants_graphql_response(accept: str | None) -> bool:
    """application/graphql-response+json when the client prefers it to application/json
    (no Accept, or */*, means application/json: the spec's legacy default)."""
    if not accept:
        return False
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    ours = quality.get(_GRAPHQL_RESPONSE, 0.0)
    return ours > 0 and ours >= quality.get(_JSON, 0.0)


def _codes(result: Any) -> list[str]:
    return [
        str((error.extensions or {}).get("code")) for error in getattr(result, "errors", None) or []
    ]


def is_request_error(result: Any) -> bool:
    """Nothing executed: no data, and no error has a path (field errors have one)."""
    errors = getattr(result, "errors", None) or []
    return bool(errors) and result.data is None and all(e.path is None for e in errors)


def response_status(result: Any, *, graphql_response: bool) -> tuple[int, dict[str, str], bool]:
    """(status, extra headers, whether it is a request error) for one execution result."""
    codes = _codes(result)
    request_error = is_request_error(result)
    if "UNAUTHENTICATED" in codes:
        return 401, {"www-authenticate": "Bearer"}, request_error
    if "RATE_LIMITED" in codes:
        retry = next(
            (
                (e.extensions or {}).get("retryAfterSeconds")
                for e in result.errors
                if (e.extensions or {}).get("code") == "RATE_LIMITED"
            ),
            None,
        )
        return 429, {"retry-after": str(retry or 1)}, request_error
    if graphql_response and request_error:
        return 400, {}, True
    return 200, {}, request_error


def error_body(message: str, code: str, *, with_data: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return {"data": None, **body} if with_data else body
