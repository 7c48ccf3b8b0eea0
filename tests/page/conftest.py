"""Browser tests of the Sync Status page: a real `syncstatus serve` on a free port with its own
SQLite file (seeded through the CLI), driven by Debian's Chromium through Playwright.

Chromium is not downloadable here; the tests use /usr/bin/chromium (override with
SYNCSTATUS_CHROMIUM). Without it they skip, or fail under SYNCSTATUS_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.page.helpers import Gql
from tests.server import ROOT, Server, cli, create_token, run_server, sqlite_database

CHROMIUM = Path(os.environ.get("SYNCSTATUS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
# A zone with a half-hour offset and no daylight saving: local-day bounds are unmistakable.
TIMEZONE = "Asia/Kolkata"
MAIN_TENANT, MAIN_USERS = "PageMain", 37  # read-only tests: 4 pages of 10
LIVE_TENANT, LIVE_USERS = "PageLive", 12  # tests that change data through worker mutations

expect.set_options(timeout=10_000)


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("SYNCSTATUS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and SYNCSTATUS_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@dataclass
class PageEnv:
    server: Server
    viewer_token: str
    viewer: Gql  # main tenant, read-only
    live_viewer_token: str
    live_viewer: Gql
    live_worker: Gql
    live_operator_token: str = ""  # OPERATOR of the live tenant: Sync now, Retry all

    @property
    def url(self) -> str:
        return self.server.url

    def wait_for_subscribers(self, minimum: int = 1, timeout: float = 10.0) -> None:
        """Wait until the server has user subscribers (the page's syncUserUpdated), so events
        sent next reach it. Uses /healthz when it reports them; otherwise waits a moment."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                stats = httpx.get(f"{self.url}/healthz", timeout=2).json().get("subscriptions", {})
            except (httpx.HTTPError, ValueError):
                stats = {}
            if "user_subscribers" not in stats:
                time.sleep(1.0)
                return
            if stats["user_subscribers"] >= minimum:
                time.sleep(0.2)
                return
            time.sleep(0.1)
        raise AssertionError("the page never subscribed to syncUserUpdated")


@pytest.fixture(scope="package")
def page_env() -> Iterator[PageEnv]:
    _require_chromium()
    with sqlite_database() as database_url:
        cli(database_url, "seed", "--tenant", MAIN_TENANT, "--users", str(MAIN_USERS))
        cli(database_url, "seed", "--tenant", LIVE_TENANT, "--users", str(LIVE_USERS))
        viewer = create_token(database_url, MAIN_TENANT, "viewer")
        live_viewer = create_token(database_url, LIVE_TENANT, "viewer")
        live_worker = create_token(database_url, LIVE_TENANT, "worker")
        live_operator = create_token(database_url, LIVE_TENANT, "operator")
        with run_server(database_url) as server:
            yield PageEnv(
                server=server,
                viewer_token=viewer,
                viewer=Gql(server.graphql_url, viewer),
                live_viewer_token=live_viewer,
                live_viewer=Gql(server.graphql_url, live_viewer),
                live_worker=Gql(server.graphql_url, live_worker),
                live_operator_token=live_operator,
            )


# Package-scoped, so closed after the last browser test: Playwright's sync API keeps an event
# loop running in the main thread while it is open, which breaks every asyncio test after it
# in the same process.
@pytest.fixture(scope="package")
def browser(page_env: PageEnv) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # Reduced motion: the page's indicators stand still (styles.css), so Chromium does not
    # repaint pulsing badges at 60 frames a second through every test with a run in progress.
    # tests/page/test_layout.py checks both preferences.
    context = browser.new_context(
        viewport={"width": 1400, "height": 900},
        locale="en-US",
        timezone_id=TIMEZONE,
        reduced_motion="reduce",
    )
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def new_page(context: BrowserContext) -> Iterator[Callable[[], Page]]:
    """Pages of this test's browser context; any uncaught script error fails the test."""
    errors: list[str] = []

    def make() -> Page:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield make
    assert not errors, f"uncaught errors in the page: {errors}"


def open_dashboard(page: Page, base_url: str, token: str) -> Page:
    """The page as `syncstatus demo` links it: the token in the fragment; wait for the rows."""
    page.goto(f"{base_url}/#token={token}")
    expect(result_count(page)).to_have_text(re.compile(r"^\d+-\d+ of \d+ results$"))
    expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    return page


def result_count(page: Page):
    return page.locator("#result-count")


@pytest.fixture
def dashboard(page_env: PageEnv, new_page: Callable[[], Page]) -> Page:
    """The main tenant's page, loaded and live."""
    return open_dashboard(new_page(), page_env.url, page_env.viewer_token)


@pytest.fixture
def live_dashboard(page_env: PageEnv, new_page: Callable[[], Page]) -> Page:
    """The live tenant's page, loaded and live."""
    return open_dashboard(new_page(), page_env.url, page_env.live_viewer_token)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(*fields): API fields a page test needs the server to serve"
    )
