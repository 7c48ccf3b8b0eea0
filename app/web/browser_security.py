"""What browsers are told: which other origins may call the API (CORS over HTTP, and the same
list for WebSocket handshakes), and the headers that confine the page and GraphiQL: a
Content-Security-Policy without inline script, nosniff, no referrer, and who may frame them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.http.websocket_origin import normalize_allowed_origins

# Headers a cross-origin page may send and read. Authorization carries the token (no cookies,
# so credentials stay off), X-Request-ID correlates logs; Retry-After and WWW-Authenticate let a
# client react to 429 / 401.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-ID")
EXPOSED_HEADERS = (
    "Retry-After",
    "WWW-Authenticate",
    "Content-Disposition",
    "Server-Timing",
    "X-Request-ID",
)
PREFLIGHT_MAX_AGE = 600

# One CSP source expression: a keyword in quotes, a scheme ("https:"), or a host source with an
# optional scheme, wildcard subdomain, port and path. Nothing that could end the directive.
_SOURCE = re.compile(
    r"^(?:'self'|'none'|[a-z][a-z0-9+.-]*:"
    r"|(?:[a-z][a-z0-9+.-]*://)?(?:\*\.)?[a-z0-9.-]+|\*)(?::(?:\d{1,5}|\*))?(?:/[^\s;,'\"]*)?$",
    re.IGNORECASE,
)


def allowed_origins(configured: Iterable[str]) -> frozenset[str]:
    """SYNCSTATUS_CORS_ORIGINS as browsers send Origin (lowercase, no default port), or an
    error naming the setting for an entry that is not an origin."""
    try:
        return normalize_allowed_origins(tuple(configured))
    except ValueError as error:
        raise ValueError(f"SYNCSTATUS_CORS_ORIGINS: {error}") from None


def frame_ancestors(value: str) -> str:
    """SYNCSTATUS_FRAME_ANCESTORS, checked so it can only ever be that one CSP directive."""
    sources = value.split(" ")
    sources = [source for source in sources if source]
    if not sources or not all(_SOURCE.match(source) for source in sources):
        raise ValueError(
            f"SYNCSTATUS_FRAME_ANCESTORS: {value!r} is not a list of CSP sources "
            "(e.g. 'self' https://portal.example.com)"
        )
    if "'none'" in sources and len(sources) > 1:
        raise ValueError("SYNCSTATUS_FRAME_ANCESTORS: 'none' cannot be combined with sources")
    return " ".join(sources)


def content_security_policy(ancestors: str) -> str:
    # 'self' in connect-src covers the same host's ws:/wss: (CSP Level 3), for live updates.
    # Styles set through element.style (progress bars) are CSSOM, which style-src allows.
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {ancestors}",
        )
    )


class SecurityHeaders:
    """Adds the browser headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", content_security_policy(frame_ancestors).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def browser_middleware(origins: frozenset[str], ancestors: str) -> list[Middleware]:
    """Outermost first: a preflight is answered (or refused with 400) before anything runs."""
    return [
        Middleware(SecurityHeaders, frame_ancestors=ancestors),
        Middleware(
            CORSMiddleware,
            allow_origins=sorted(origins),
            allow_methods=["GET", "POST"],
            allow_headers=list(ALLOWED_HEADERS),
            expose_headers=list(EXPOSED_HEADERS),
            max_age=PREFLIGHT_MAX_AGE,
        ),
    ]
