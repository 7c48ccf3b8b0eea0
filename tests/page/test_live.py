"""Live updates: worker mutations reach the open page (cards, rows, panel) without a reload, and
the page reconnects and refetches after losing its WebSocket."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from playwright.sync_api import Page, WebSocketRoute, expect

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


def test_a_cut_off_subscription_is_renewed_and_what_it_missed_refetched(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    """The server ends a subscription that fell too far behind with CONFLICT, then complete.
    The page subscribes again and refetches once the server has the new subscription: a change
    made while it had none shows, and later changes arrive live. (A proxy between the page and
    the real server ends the subscription on both sides, as the server does for a slow page.)"""
    page = new_page()
    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    user_ops: list[str] = []  # ids of the page's syncUserUpdated subscriptions, in order

    def websocket(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            parsed = json.loads(message)
            if parsed.get("type") == "subscribe" and "syncUserUpdated" in str(parsed["payload"]):
                user_ops.append(parsed["id"])
            server.send(message)

        ws.on_message(from_page)
        server.on_message(lambda message: ws.send(message))
        sockets.append((ws, server))

    page.route_web_socket(re.compile(r"/graphql$"), websocket)
    page.goto(f"{page_env.url}/#token={page_env.live_viewer_token}")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    user = live_user(page_env, 5)
    page_env.live_worker.make_idle(user)
    user_row = row(page, user["email"])
    expect(user_row.locator("td").nth(3).locator(".badge")).not_to_have_text("Failed")
    page_env.wait_for_subscribers()
    page.evaluate("window.__noReload = true")
    to_page, to_server = sockets[-1]
    cut = list(user_ops)
    assert cut, "the page subscribed to its rows"

    for op in cut:  # the server forgets the page's subscriptions ...
        to_server.send(json.dumps({"id": op, "type": "complete"}))
    page.wait_for_timeout(300)
    run = page_env.live_worker.start_run(user["id"], items_total=10)  # ... so this is missed
    page_env.live_worker.finish(run["id"], error_code="ERR_NET_001", error_message="Gone")
    for op in cut:  # ... and tells the page so
        conflict = {
            "message": "The subscriber fell too far behind; refetch and resubscribe.",
            "path": ["syncUserUpdated"],
            "extensions": {"code": "CONFLICT"},
        }
        to_page.send(
            json.dumps({"id": op, "type": "next", "payload": {"data": None, "errors": [conflict]}})
        )
        to_page.send(json.dumps({"id": op, "type": "complete"}))

    status = user_row.locator("td").nth(3).locator(".badge")
    expect(status).to_have_text("Failed")  # refetched
    assert len(user_ops) > len(cut), "subscribed again"
    page_env.live_worker.start_run(user["id"], items_total=10)
    expect(status).to_have_text("In Progress")  # live again
    expect(page.locator("#page-error")).to_be_hidden()
    assert page.evaluate("window.__noReload") is True


def test_after_a_reconnect_the_refetch_waits_until_the_server_has_the_subscriptions(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    """After reconnecting, the page refetches only once the server has taken its subscriptions
    (a ping after them, answered after them): a refetch made earlier could read before a change
    whose event then reaches no subscription. A proxy holds the page's messages after the
    connection's acknowledgement while the change is made."""
    page = new_page()
    sockets: list[WebSocketRoute] = []
    held: list[str | bytes] = []
    holding = {"on": False}

    def websocket(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if holding["on"] and json.loads(message).get("type") != "connection_init":
                held.append(message)
            else:
                server.send(message)

        def release() -> None:
            holding["on"] = False
            for message in held:
                server.send(message)
            held.clear()

        ws.on_message(from_page)
        server.on_message(lambda message: ws.send(message))
        sockets.append(ws)
        release_of[0] = release

    release_of: list[Callable[[], None]] = [lambda: None]
    page.route_web_socket(re.compile(r"/graphql$"), websocket)
    page.goto(f"{page_env.url}/#token={page_env.live_viewer_token}")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    user = live_user(page_env, 6)
    page_env.live_worker.make_idle(user)
    status = row(page, user["email"]).locator("td").nth(3).locator(".badge")
    expect(status).not_to_have_text("Failed")
    page.evaluate("window.__noReload = true")

    holding["on"] = True
    sockets[-1].close(code=1011, reason="test drops the connection")
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1500)  # a refetch made at the acknowledgement is over by now
    run = page_env.live_worker.start_run(user["id"], items_total=10)
    page_env.live_worker.finish(run["id"], error_code="ERR_NET_001", error_message="Gone")
    page.wait_for_timeout(300)
    assert held, "the page subscribed again after reconnecting"
    release_of[0]()
    expect(status).to_have_text("Failed")
    assert page.evaluate("window.__noReload") is True
