"""Outages under the open page (issue 11). A broker outage: while the server's Redis is down the
page says "Reconnecting…" above everything and greys out what may be stale; data changed
meanwhile (its events are lost) is on the page once it is live again, exactly as a fresh load
shows it. A database outage: a page opened during it loads by itself once it is over."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.page.conftest import LIVE_TENANT, open_dashboard, screenshot
from tests.page.helpers import Gql
from tests.page.test_panel import panel, row
from tests.private_postgres import private_postgres
from tests.private_redis import PrivateRedis, started_private_redis
from tests.server import Server, cli, create_token, migrate, run_server, sqlite_database

LIVE_AGAIN_WITHIN = 45_000  # ms after Redis is back: the page's backoff grows to 16 s meanwhile

# What a person reads on the page: the cards, the rows and the open panel (durations that tick
# every second left out).
PAGE_TEXT = """() => {
  const text = (node) => {
    const copy = node.cloneNode(true);
    for (const el of copy.querySelectorAll("[data-live-duration]")) el.textContent = "";
    return copy.innerText.replace(/\\s+/g, " ").trim();
  };
  return {
    cards: [...document.querySelectorAll(".metric-card")].map(text),
    rows: [...document.querySelectorAll("#users-body tr")].map(text),
    panel: text(document.getElementById("panel-body")),
  };
}"""


@dataclass
class OutageEnv:
    server: Server
    redis: PrivateRedis
    viewer_token: str
    viewer: Gql
    worker: Gql


@pytest.fixture(scope="module")
def outage_env(page_env: object) -> Iterator[OutageEnv]:
    """Its own server on a private Redis that the test kills (page_env: Chromium is there)."""
    with (
        started_private_redis() as redis,
        sqlite_database() as database_url,
    ):
        cli(database_url, "seed", "--tenant", LIVE_TENANT, "--users", "12")
        viewer = create_token(database_url, LIVE_TENANT, "viewer")
        worker = create_token(database_url, LIVE_TENANT, "worker")
        # A grace of 1 s: this outage outlasts it, so the page is told (a shorter one is ridden
        # out on the event log without the page noticing).
        env = {"SYNCSTATUS_BROADCAST_URL": redis.url, "SYNCSTATUS_BROKER_GRACE_SECONDS": "1"}
        with run_server(database_url, env=env) as server:
            api = server.graphql_url
            yield OutageEnv(server, redis, viewer, Gql(api, viewer), Gql(api, worker))


def _idle_users(env: OutageEnv, count: int) -> list[dict[str, object]]:
    users = env.viewer.users(first=10)["users"][:count]
    for user in users:
        env.worker.make_idle(user)
    return [env.viewer.user(str(user["id"])) for user in users]


def test_broker_outage_shows_reconnecting_then_equals_a_fresh_load(
    outage_env: OutageEnv, new_page: Callable[[], Page]
) -> None:
    env = outage_env
    first, second = _idle_users(env, 2)
    page = open_dashboard(new_page(), env.server.url, env.viewer_token)
    page.evaluate("window.__noReload = true")
    row(page, str(first["email"])).click()
    details = panel(page)
    expect(details.locator("[data-role=source-email]")).to_have_text(str(first["email"]))
    banner = page.locator("#reconnecting")
    expect(banner).to_be_hidden()

    env.redis.kill()
    try:
        expect(banner).to_be_visible(timeout=10_000)
        expect(banner).to_have_text(
            "Reconnecting… Live updates are paused; the figures, rows and details shown may be "
            "out of date."
        )
        expect(page.locator("#main")).to_have_class("main out-of-date")
        expect(page.locator("#panel")).to_have_class("panel open out-of-date")
        for greyed in (".metrics", "#users-body", "#panel-body"):
            expect(page.locator(greyed)).to_have_css("opacity", "0.45")

        # Changed while the page cannot hear of it: a run failed, another started.
        run = env.worker.start_run(str(first["id"]), items_total=10)
        env.worker.report(run["id"], processed=4, changes=2)
        env.worker.finish(run["id"], error_code="ERR_NET_001", error_message="Gone")
        env.worker.start_run(str(second["id"]), items_total=50)
        page.wait_for_timeout(500)
        screenshot(page, "outage-reconnecting-1400.png")
        page.set_viewport_size({"width": 390, "height": 844})
        expect(banner).to_be_in_viewport()
        screenshot(page, "outage-reconnecting-390.png")
        page.set_viewport_size({"width": 1400, "height": 900})
    finally:
        env.redis.start()

    expect(banner).to_be_hidden(timeout=LIVE_AGAIN_WITHIN)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator("#main")).not_to_have_class("main out-of-date")
    expect(details.locator("dd .badge").first).to_have_text("Failed")
    assert page.evaluate("window.__noReload") is True  # recovered in place, not reloaded

    fresh = open_dashboard(new_page(), env.server.url, env.viewer_token)
    row(fresh, str(first["email"])).click()
    expect(panel(fresh).locator("dd .badge").first).to_have_text("Failed")
    expect(panel(fresh)).not_to_contain_text("Loading")  # its details read too
    deadline = time.monotonic() + 10  # the fresh page's reads settle
    while (shown := page.evaluate(PAGE_TEXT)) != (
        loaded := fresh.evaluate(PAGE_TEXT)
    ) and time.monotonic() < deadline:
        fresh.wait_for_timeout(200)
    assert shown == loaded


def test_page_opened_during_a_database_outage_loads_by_itself_when_it_ends(
    page_env: object, new_page: Callable[[], Page]
) -> None:
    """Reads get SERVICE_UNAVAILABLE (503) and the live connection 1013 while the database is
    down; the page retries both with backoff and shows everything once it is back."""
    with private_postgres() as pg:
        migrate(pg.url)
        cli(pg.url, "seed", "--tenant", LIVE_TENANT, "--users", "12")
        viewer = create_token(pg.url, LIVE_TENANT, "viewer")
        with run_server(pg.url) as server:
            pg.stop()
            try:
                page = new_page()
                page.goto(f"{server.url}/#token={viewer}")
                expect(page.locator("#users-body")).to_contain_text("Could not load users")
                page.evaluate("window.__noReload = true")
                page.wait_for_timeout(2000)  # a retry or two fails too
            finally:
                pg.start()
            expect(page.locator("#result-count")).to_have_text("1-10 of 12 results", timeout=40_000)
            expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            expect(page.locator("#metric-usersWithActivePolicy")).not_to_have_text("—")
            expect(page.locator("#page-error")).to_be_hidden()
            assert page.evaluate("window.__noReload") is True
