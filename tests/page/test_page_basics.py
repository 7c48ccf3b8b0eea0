"""The page shell: title and docs, the API token, metric cards, and the table's content."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from playwright.sync_api import Page, Route, expect

from tests.page.conftest import TIMEZONE, PageEnv, open_dashboard, result_count, screenshot
from tests.page.helpers import STATUS_LABELS, en_us_datetime, normalize_space, range_text

TOKEN_KEY = "syncstatus.token"


def test_title_and_learn_more_lead_to_the_docs(dashboard: Page) -> None:
    expect(dashboard).to_have_title("Sync Status")
    expect(dashboard.get_by_role("heading", level=1)).to_have_text("Sync Status")
    screenshot(dashboard, "page.png")

    dashboard.get_by_role("link", name="Learn more").click()
    expect(dashboard).to_have_url(re.compile(r"/docs$"))
    for section in (
        "Summary metrics",
        "Searching and filtering",
        "User sync table",
        "Status values",
        "Pagination",
        "Viewing user sync details",
    ):
        expect(dashboard.get_by_role("heading", name=section)).to_be_visible()
    expect(dashboard.get_by_text("Completed with Warning").first).to_be_visible()


def test_token_in_the_fragment_is_kept_and_removed_from_the_address_bar(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    page = open_dashboard(new_page(), page_env.url, page_env.viewer_token)
    assert "token" not in page.url
    assert page.url.rstrip("/") == page_env.url
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == page_env.viewer_token

    # A reload keeps working from sessionStorage, with no token in the address.
    page.reload()
    expect(result_count(page)).to_have_text(re.compile(r"of \d+ results"))
    expect(page.get_by_label("API token")).to_be_hidden()


def test_without_a_token_the_page_asks_for_one(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(page_env.url)
    token_input = page.get_by_label("API token")
    expect(token_input).to_be_visible()
    expect(page.get_by_role("table")).to_be_hidden()

    # A wrong token: the API answers UNAUTHENTICATED and the page asks again, saying why.
    token_input.fill("sst_not-a-real-token")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text(re.compile("token was not accepted", re.I))).to_be_visible()
    expect(token_input).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    token_input.fill(page_env.viewer_token)
    token_input.press("Enter")
    expect(result_count(page)).to_have_text(re.compile(r"^1-10 of \d+ results$"))
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == page_env.viewer_token


def test_metric_cards_show_the_tenant_metrics(page_env: PageEnv, dashboard: Page) -> None:
    metrics = page_env.viewer.metrics()
    cards = {
        "Users with active policy": metrics["usersWithActivePolicy"],
        "Changes (Last 24h)": metrics["changesLast24h"],
        "Syncs in progress": metrics["syncsInProgress"],
        "Failed syncs": metrics["failedSyncs"],
    }
    for label, value in cards.items():
        card = dashboard.locator("article.metric-card").filter(
            has=dashboard.get_by_role("heading", name=label, exact=True)
        )
        expect(card).to_have_count(1)
        expect(card.locator(".metric-value")).to_have_text(f"{value:,}")

    # Failed syncs draws attention: its card looks different from the others.
    failed = dashboard.locator("article.metric-card", has_text="Failed syncs")
    other = dashboard.locator("article.metric-card", has_text="Syncs in progress")
    style = "e => getComputedStyle(e).backgroundColor"
    assert failed.evaluate(style) != other.evaluate(style)


def test_table_lists_users_with_status_badges_and_local_times(
    page_env: PageEnv, dashboard: Page
) -> None:
    table = dashboard.get_by_role("table")
    headers = table.locator("thead th")
    expect(headers).to_have_text(["User", "Latest Sync", "Policy", "Status"])
    for i in range(4):
        expect(headers.nth(i)).to_have_attribute("scope", "col")
    expect(dashboard.locator("input[type=checkbox]")).to_have_count(0)

    expected = page_env.viewer.users(first=10)
    expect(result_count(dashboard)).to_have_text(range_text(1, 10, expected["total"]))
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(10)
    for i, user in enumerate(expected["users"]):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(user["email"])
        latest = normalize_space(cells.nth(1).inner_text())
        if user["latestSyncAt"]:
            assert latest == en_us_datetime(user["latestSyncAt"], TIMEZONE), user
        else:
            assert latest == "Never"
        expect(cells.nth(2)).to_have_text(user["policy"]["name"] if user["policy"] else "No policy")
        expect(cells.nth(3).locator(".badge")).to_have_text(STATUS_LABELS[user["status"]])


def test_every_status_has_its_own_badge_colour(page_env: PageEnv, dashboard: Page) -> None:
    colours = {}
    for status, label in STATUS_LABELS.items():
        if page_env.viewer.total({"status": status}) == 0:
            continue
        dashboard.get_by_label("Status", exact=True).select_option(label=label)
        dashboard.get_by_role("button", name="Apply filters").click()
        badge = dashboard.locator("tbody tr").first.locator(".badge")
        expect(badge).to_have_text(label)
        colours[status] = badge.evaluate("e => getComputedStyle(e).backgroundColor")
    assert len(colours) >= 3, "the seed should produce most statuses"
    assert len(set(colours.values())) == len(colours), colours


def test_loading_and_api_errors_say_what_happened(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    failing = {"on": False}

    def users_route(route: Route) -> None:
        body = route.request.post_data or ""
        if "syncUsers(" not in body:
            route.continue_()
        elif failing["on"]:
            route.fulfill(
                status=200,
                content_type="application/json",
                body=json.dumps(
                    {
                        "data": None,
                        "errors": [
                            {
                                "message": "emailContains must be at most 320 characters.",
                                "extensions": {"code": "BAD_USER_INPUT"},
                            }
                        ],
                    }
                ),
            )
        else:
            page.wait_for_timeout(800)  # slow enough to see the loading state
            route.continue_()

    page.route(re.compile(r"/graphql$"), users_route)
    page.goto(f"{page_env.url}/#token={page_env.viewer_token}")
    expect(page.get_by_text("Loading users…")).to_be_visible()
    expect(result_count(page)).to_have_text(re.compile(r"^1-10 of \d+ results$"))

    failing["on"] = True
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_text("emailContains must be at most 320 characters.")).to_be_visible()
    expect(page.get_by_role("button", name="Try again")).to_be_visible()

    failing["on"] = False
    page.get_by_role("button", name="Try again").click()
    expect(result_count(page)).to_have_text(re.compile(r"^1-10 of \d+ results$"))
