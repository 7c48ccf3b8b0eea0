"""Browser-facing headers on a real server: CORS for the allowlist, the same allowlist for
WebSocket handshakes, the CSP and its companions on the page, its assets and GraphiQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.web.browser_security import content_security_policy, frame_ancestors
from app.web.graphiql import GraphiQLAssets
from tests.server import Server, create_token, run_server, sqlite_database

PARTNER = "https://portal.partner.example"
FOREIGN = "https://evil.example"
EMBEDDER = "https://host.partner.example"
TENANT = "Origins"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    env = {
        # Spelled as a person might: case and a default port are normalised.
        "SYNCSTATUS_CORS_ORIGINS": f" {PARTNER.upper().replace('HTTPS', 'https')}:443 , http://localhost:5173",
        "SYNCSTATUS_FRAME_ANCESTORS": f"'self' {EMBEDDER}",
    }
    with sqlite_database() as url, run_server(url, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def default_server() -> Iterator[Server]:
    with sqlite_database() as url, run_server(url) as running:
        yield running


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    return create_token(server.database_url, TENANT, "viewer")


def preflight(
    server: Server, origin: str, headers: str = "authorization, content-type"
) -> httpx.Response:
    return httpx.options(
        server.graphql_url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )


METRICS = {"query": "{ syncMetrics { totalUsers } }"}


# ---- CORS ---------------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_admits_the_token_header(server: Server) -> None:
    response = preflight(server, PARTNER)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PARTNER
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers  # tokens, not cookies


def test_a_preflight_from_another_origin_is_refused(server: Server) -> None:
    response = preflight(server, FOREIGN)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_a_preflight_asking_for_other_headers_is_refused(server: Server) -> None:
    response = preflight(server, PARTNER, headers="authorization, x-evil")
    assert response.status_code == 400


def test_an_allowed_origin_reads_the_answer(server: Server, token: str) -> None:
    response = httpx.post(
        server.graphql_url,
        json=METRICS,
        headers={"Origin": PARTNER, "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    assert response.json()["data"]["syncMetrics"]["totalUsers"] == 0
    assert response.headers["access-control-allow-origin"] == PARTNER
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()


def test_another_origin_gets_no_cors_grant(server: Server, token: str) -> None:
    response = httpx.post(
        server.graphql_url,
        json=METRICS,
        headers={"Origin": FOREIGN, "Authorization": f"Bearer {token}"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_by_default_no_other_origin_is_allowed(default_server: Server) -> None:
    assert preflight(default_server, PARTNER).status_code == 400
    assert preflight(default_server, "http://localhost:5173").status_code == 400
    response = httpx.post(default_server.graphql_url, json=METRICS, headers={"Origin": PARTNER})
    assert "access-control-allow-origin" not in response.headers


# ---- WebSocket origins --------------------------------------------------------------------------


def ws_handshake(server: Server, token: str, origin: str | None) -> dict[str, object]:
    """Opens a graphql-transport-ws socket with that Origin; returns the server's first message."""
    with connect(
        server.ws_url,
        origin=origin,  # type: ignore[arg-type]
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        open_timeout=5,
    ) as socket:
        socket.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        return json.loads(socket.recv(timeout=5))


def test_a_websocket_from_an_allowed_origin_is_accepted(server: Server, token: str) -> None:
    assert ws_handshake(server, token, PARTNER)["type"] == "connection_ack"
    assert ws_handshake(server, token, "http://localhost:5173")["type"] == "connection_ack"


def test_a_websocket_from_the_same_origin_or_without_origin_is_accepted(
    server: Server, token: str
) -> None:
    assert ws_handshake(server, token, server.url)["type"] == "connection_ack"
    assert ws_handshake(server, token, None)["type"] == "connection_ack"


def test_a_websocket_from_another_origin_is_refused(server: Server, token: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws_handshake(server, token, FOREIGN)
    assert refused.value.response.status_code == 403


def test_by_default_a_websocket_from_another_origin_is_refused(default_server: Server) -> None:
    token = create_token(default_server.database_url, TENANT, "viewer")
    with pytest.raises(InvalidStatus):
        ws_handshake(default_server, token, PARTNER)
    assert ws_handshake(default_server, token, default_server.url)["type"] == "connection_ack"


# ---- page headers -------------------------------------------------------------------------------

PAGE_PATHS = ["/", "/docs", "/static/js/main.js", "/static/styles.css", "/graphql"]


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_the_page_and_its_assets_carry_the_security_headers(server: Server, path: str) -> None:
    response = httpx.get(f"{server.url}{path}", headers={"Accept": "text/html"})
    assert response.status_code in (200, 503), response.text[:200]  # 503: GraphiQL not installed
    csp = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'self'", EMBEDDER]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_frame_ancestors_defaults_to_self(default_server: Server) -> None:
    csp = httpx.get(default_server.url).headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp.split("; ")


def test_the_pages_have_no_inline_script_or_style(server: Server) -> None:
    for path in ("/", "/docs"):
        html = httpx.get(f"{server.url}{path}").text.lower()
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert " onclick=" not in html and "javascript:" not in html


# ---- settings checks (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "'self'",
        "'none'",
        "https://a.example https://*.b.example:8443",
        "'self' http://localhost:3000",
    ],
)
def test_frame_ancestors_accepts_csp_sources(value: str) -> None:
    assert frame_ancestors(value) == value
    assert f"frame-ancestors {value}" in content_security_policy(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "'self'; script-src *",
        "https://a.example, https://b.example",
        "'unsafe-inline'",
        "'none' 'self'",
        "a\r\nX: y",
    ],
)
def test_frame_ancestors_refuses_anything_that_is_not_one_directive(value: str) -> None:
    with pytest.raises(ValueError, match="SYNCSTATUS_FRAME_ANCESTORS"):
        frame_ancestors(value)


def test_a_bad_cors_origin_stops_the_server_with_the_setting_named() -> None:
    bad = {"SYNCSTATUS_CORS_ORIGINS": "https://ok.example/path"}
    with (
        sqlite_database() as url,
        pytest.raises(RuntimeError, match="SYNCSTATUS_CORS_ORIGINS"),
        run_server(url, env=bad),
    ):
        pass


# ---- GraphiQL's files ---------------------------------------------------------------------------


def test_graphiql_without_its_files_says_how_to_install_them(tmp_path: Path) -> None:
    env = {"SYNCSTATUS_GRAPHIQL_DIR": str(tmp_path / "not-installed")}
    with sqlite_database() as url, run_server(url, env=env) as bare:
        page = httpx.get(bare.graphql_url, headers={"Accept": "text/html"})
        assert page.status_code == 503
        assert "GraphiQL is not installed" in page.text
        assert "./dev graphiql" in page.text and "npm ci" in page.text
        assert "<script" not in page.text
        assert httpx.get(f"{bare.url}/graphiql-assets/graphiql.min.js").status_code == 404
        # The API is unaffected.
        answer = httpx.post(bare.graphql_url, json={"query": "{ __typename }"})
        assert answer.json()["data"] == {"__typename": "Query"}


def test_graphiql_serves_only_its_listed_files(server: Server) -> None:
    if not GraphiQLAssets().installed():
        pytest.skip("GraphiQL's files are not installed (./dev graphiql)")
    listed = httpx.get(f"{server.url}/graphiql-assets/graphiql.min.js")
    assert listed.status_code == 200
    assert listed.headers["content-type"].startswith("text/javascript")
    for name in ("package.json", "..%2F..%2Fpackage.json", "react%2Fpackage.json", "graphiql.js"):
        assert httpx.get(f"{server.url}/graphiql-assets/{name}").status_code == 404, name
