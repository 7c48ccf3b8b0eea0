"""A real browser on another origin: pages on an allowed origin call the API (the preflight
admits the Authorization header) and open its WebSocket; pages on any other origin get neither."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.page.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.server import Server, create_token, run_server, sqlite_database

ALLOWED = "http://partner.test"
OTHER = "http://other.test"

# Runs in a page of the other origin: one authenticated POST and one graphql-transport-ws handshake.
PROBE = """async ([api, ws, token]) => {
  const out = {};
  try {
    const response = await fetch(api, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: "{ syncMetrics { totalUsers } }" }),
    });
    out.http = (await response.json()).data.syncMetrics.totalUsers;
  } catch (error) {
    out.http = `refused: ${error.name}`;
  }
  out.ws = await new Promise((resolve) => {
    const socket = new WebSocket(ws, "graphql-transport-ws");
    socket.onopen = () => socket.send(JSON.stringify({
      type: "connection_init", payload: { authorization: `Bearer ${token}` } }));
    socket.onmessage = (event) => { resolve(JSON.parse(event.data).type); socket.close(); };
    socket.onerror = () => resolve("refused");
    setTimeout(() => resolve("timeout"), 5000);
  });
  return out;
}"""


@pytest.fixture(scope="module")
def lan_browser(browser: Browser) -> Iterator[Browser]:
    """Chromium without its Local Network Access checks: here the service listens on 127.0.0.1,
    which Chromium would refuse to any page of another address space whatever CORS says."""
    own = browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks"],
    )
    try:
        yield own
    finally:
        own.close()


@pytest.fixture(scope="module")
def cors_server() -> Iterator[tuple[Server, str]]:
    with (
        sqlite_database() as url,
        run_server(url, env={"SYNCSTATUS_CORS_ORIGINS": ALLOWED}) as server,
    ):
        yield server, create_token(url, "CrossOrigin", "viewer")


def page_on(browser: Browser, origin: str) -> Page:
    """A page whose document comes from `origin` (served by the test: nothing listens there)."""
    context = browser.new_context()
    page = context.new_page()

    def serve(route: Route) -> None:
        route.fulfill(body="<!doctype html><title>partner</title>", content_type="text/html")

    page.route(f"{origin}/**", serve)
    page.goto(f"{origin}/app")
    return page


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (ALLOWED, {"http": 0, "ws": "connection_ack"}),
        (OTHER, {"http": "refused: TypeError", "ws": "refused"}),
    ],
)
def test_only_allowed_origins_reach_the_api_from_a_browser(
    lan_browser: Browser, cors_server: tuple[Server, str], origin: str, expected: dict[str, object]
) -> None:
    server, token = cors_server
    page = page_on(lan_browser, origin)
    try:
        assert page.evaluate(PROBE, [server.graphql_url, server.ws_url, token]) == expected
    finally:
        page.context.close()
