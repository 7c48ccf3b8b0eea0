"""Live updates: worker mutations reach the open page (cards, rows, panel) without a reload, and
the page reconnects and refetches after losing its WebSocket."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, Request, WebSocketRoute, expect

from tests.page.conftest import PageEnv, screenshot
from tests.page.test_panel import live_user, panel, row, section


def metric(page: Page, label: str):
    return page.locator("article.metric-card", has_text=label).locator(".metric-value")


def test_worker_run_appears_live_in_row_panel_and_cards(
    page_env: PageEnv, live_dashboard: Page
) -> None:
    page = live_dashboard
    worker = page_env.live_worker
    user = live_user(page_env, 0)  # first by email: on the first page
    before = page_env.live_viewer.metrics()
    expect(metric(page, "Syncs in progress")).to_have_text(f"{before['syncsInProgress']:,}")
    page.evaluate("window.__noReload = true")

    user_row = row(page, user["email"])
    user_row.click()
    details = panel(page)
    expect(details.locator("[data-role=source-email]")).to_have_text(user["email"])
    page_env.wait_for_subscribers()

    run = worker.start_run(user["id"], items_total=200)
    status_cell = user_row.locator("td").nth(3)
    expect(status_cell.locator(".badge")).to_have_text("In Progress")
    expect(details.locator("dd .badge").first).to_have_text("In Progress")
    expect(metric(page, "Syncs in progress")).to_have_text(f"{before['syncsInProgress'] + 1:,}")

    worker.report(run["id"], processed=100, changes=12)
    expect(status_cell.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "50")
    expect(status_cell).to_contain_text("50%")
    expect(details.get_by_role("progressbar").first).to_have_attribute("aria-valuenow", "50")
    expect(details.get_by_text("100 of 200", exact=True)).to_be_visible()
    screenshot(page, "live-progress.png")

    worker.report(run["id"], processed=200, changes=30)
    expect(status_cell).to_contain_text("100%")
    worker.finish(run["id"])
    expect(status_cell.locator(".badge")).to_have_text("Synced")
    expect(status_cell.get_by_role("progressbar")).to_have_count(0)
    expect(details.locator("dd .badge").first).to_have_text("Synced")
    expect(metric(page, "Syncs in progress")).to_have_text(f"{before['syncsInProgress']:,}")
    history = section(details, re.compile("^Sync history"))
    expect(history.locator("li").first.locator(".badge")).to_have_text("Succeeded")

    assert page.evaluate("window.__noReload") is True  # the same document all along


def test_reconnects_with_backoff_and_refetches_what_it_missed(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    passed: list[WebSocketRoute] = []
    refused: list[WebSocketRoute] = []
    server_up = {"on": True}

    def websocket(ws: WebSocketRoute) -> None:
        # While "down", connections are refused, so nothing reaches the page over WebSocket:
        # only a refetch after reconnecting can show what changed meanwhile.
        if server_up["on"]:
            ws.connect_to_server()
            passed.append(ws)
        else:
            refused.append(ws)
            ws.close(code=1013, reason="try again later")

    page.route_web_socket(re.compile(r"/graphql$"), websocket)
    page.goto(f"{page_env.url}/#token={page_env.live_viewer_token}")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    user = live_user(page_env, 3)
    user_row = row(page, user["email"])
    expect(user_row).to_be_visible()
    page.evaluate(
        """() => {
          window.__noReload = true;
          window.__states = [];
          const el = document.getElementById("connection");
          new MutationObserver(() => window.__states.push(el.dataset.state))
            .observe(el, { attributes: true, attributeFilter: ["data-state"] });
        }"""
    )

    server_up["on"] = False
    passed[-1].close(code=1011, reason="test drops the connection")
    expect(page.locator("#connection").filter(has_text="Reconnecting")).to_be_visible()
    run = page_env.live_worker.start_run(user["id"], items_total=10)
    page_env.live_worker.finish(run["id"], error_code="ERR_NET_001", error_message="Gone")
    page.wait_for_timeout(1500)
    assert refused, "the page should have tried again while the server was away"
    expect(user_row.locator("td").nth(3).locator(".badge")).not_to_have_text("Failed")

    server_up["on"] = True
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible(timeout=30_000)
    expect(user_row.locator("td").nth(3).locator(".badge")).to_have_text("Failed")
    assert page.evaluate("window.__states")[0] == "reconnecting"
    assert page.evaluate("window.__noReload") is True


CUT_OFF = {
    "data": None,
    "errors": [
        {
            "message": "The subscriber fell too far behind; refetch and resubscribe.",
            "extensions": {"code": "CONFLICT"},
        }
    ],
}


def test_a_row_subscription_cut_off_resubscribes_and_refetches(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    """The server cuts a subscriber that fell too far behind off with CONFLICT and completes
    its subscription. A browser that keeps reading cannot be made that slow on demand, so the
    test ends the row subscription on the real server itself and hands the page the server's
    CONFLICT message; all else is the real server."""
    page = new_page()
    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    sent: list[dict[str, Any]] = []  # what the page sent, in order

    def websocket(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            sent.append(json.loads(message))
            server.send(message)

        ws.on_message(to_server)
        sockets.append((ws, server))

    page.route_web_socket(re.compile(r"/graphql$"), websocket)
    page.goto(f"{page_env.url}/#token={page_env.live_viewer_token}")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    user = live_user(page_env, 9)
    status = row(page, user["email"]).locator("td").nth(3).locator(".badge")
    expect(status).to_be_visible()
    page.evaluate("window.__noReload = true")

    def row_subscriptions() -> list[str]:
        return [
            m["id"]
            for m in sent
            if m.get("type") == "subscribe"
            and user["id"] in (m["payload"].get("variables") or {}).get("userIds", [])
        ]

    deadline = time.monotonic() + 10
    while not row_subscriptions():
        assert time.monotonic() < deadline, "the page never subscribed to its rows"
        page.wait_for_timeout(100)
    [cut] = row_subscriptions()
    route, server = sockets[-1]
    server.send(json.dumps({"id": cut, "type": "complete"}))  # the server ends it
    run = page_env.live_worker.start_run(user["id"], items_total=10)
    page.wait_for_timeout(1000)
    expect(status).not_to_have_text("In Progress")  # nothing carries it to the page now

    route.send(json.dumps({"id": cut, "type": "next", "payload": CUT_OFF}))
    route.send(json.dumps({"id": cut, "type": "complete"}))
    expect(status).to_have_text("In Progress")  # refetched
    assert len(row_subscriptions()) == 2, "subscribed to the rows again"
    page_env.live_worker.finish(run["id"], error_code="ERR_NET_001", error_message="Gone")
    expect(status).to_have_text("Failed")  # live again
    assert page.evaluate("window.__noReload") is True
    expect(page.locator("#page-error")).to_be_hidden()


def test_after_a_reconnect_the_refetch_waits_for_the_subscriptions(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    """A change between the refetch and its subscription's registration would be in neither:
    the page refetches only after the server answered a ping sent behind its subscribes (the
    server handles a socket's messages in order)."""
    page = new_page()
    routes: list[WebSocketRoute] = []
    events: list[tuple[str, str]] = []  # ("page" | "server" | "http", what), in order

    def websocket(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            events.append(("page", json.loads(message)["type"]))
            server.send(message)

        def to_page(message: str | bytes) -> None:
            events.append(("server", json.loads(message)["type"]))
            ws.send(message)

        ws.on_message(to_server)
        server.on_message(to_page)
        routes.append(ws)

    def request(req: Request) -> None:
        if req.method == "POST" and req.url.endswith("/graphql"):
            events.append(("http", "POST"))

    page.on("request", request)
    page.route_web_socket(re.compile(r"/graphql$"), websocket)
    page.goto(f"{page_env.url}/#token={page_env.live_viewer_token}")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    page.wait_for_timeout(1000)  # the first load's requests are done
    reconnect = len(events)
    routes[-1].close(code=1011, reason="test drops the connection")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)
    after = events[reconnect:]
    ack = after.index(("server", "connection_ack"))
    refetch = after.index(("http", "POST"), ack)
    subscribes = [i for i, e in enumerate(after) if e == ("page", "subscribe")]
    assert subscribes and all(ack < i for i in subscribes), after
    ping = after.index(("page", "ping"), max(subscribes))
    pong = after.index(("server", "pong"), ping)
    assert refetch > pong, f"refetched before the subscriptions were registered: {after}"
