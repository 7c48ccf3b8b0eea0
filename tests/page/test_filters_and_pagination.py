"""Filters apply only on Apply filters (or Enter in the search box); Clear and Refresh; page size,
the "x-y of N results" text, and Previous / Next through cursors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, Request, Response, expect

from app.domain.validation import CODE_MAX, SEARCH_MAX
from tests.page.conftest import MAIN_USERS, TIMEZONE, PageEnv, result_count
from tests.page.helpers import STATUS_LABELS, local_day_bounds, range_text


class UserQueries:
    """Records the variables of every syncUsers query the page sends."""

    def __init__(self, page: Page) -> None:
        self.sent: list[dict[str, Any]] = []
        page.on("request", self._on_request)

    def _on_request(self, request: Request) -> None:
        if request.method != "POST" or not request.url.endswith("/graphql"):
            return
        body = json.loads(request.post_data or "{}")
        if "syncUsers(" in body.get("query", ""):
            self.sent.append(body.get("variables") or {})

    @property
    def last(self) -> dict[str, Any]:
        assert self.sent, "the page sent no syncUsers query"
        return self.sent[-1]


def is_users_query(response: Response) -> bool:
    request = response.request
    return request.url.endswith("/graphql") and "syncUsers(" in (request.post_data or "")


def emails(page: Page) -> list[str]:
    return page.locator("tbody tr td:first-child").all_inner_texts()


def apply(page: Page) -> None:
    page.get_by_role("button", name="Apply filters").click()


def test_filter_controls_are_labelled_with_their_defaults(dashboard: Page) -> None:
    expect(dashboard.get_by_label("Search by email")).to_have_value("")
    expect(dashboard.get_by_label("Start date")).to_have_attribute("type", "date")
    expect(dashboard.get_by_label("End date")).to_have_attribute("type", "date")
    policy = dashboard.get_by_label("Policy", exact=True)
    status = dashboard.get_by_label("Status", exact=True)
    expect(policy.locator("option:checked")).to_have_text("Select a policy")
    expect(status.locator("option:checked")).to_have_text("Select status")
    expect(status.locator("option")).to_have_text(["Select status", *STATUS_LABELS.values()])
    for name in ("Apply filters", "Clear filters", "Refresh", "Previous", "Next"):
        expect(dashboard.get_by_role("button", name=name, exact=True)).to_be_visible()
    expect(dashboard.get_by_label("Results per page")).to_have_value("10")


def test_policy_options_come_from_the_policies_query(page_env: PageEnv, dashboard: Page) -> None:
    names = sorted(p["name"] for p in page_env.viewer.policies())
    options = dashboard.get_by_label("Policy", exact=True).locator("option")
    expect(options).to_have_count(len(names) + 1)
    assert sorted(options.all_inner_texts()[1:]) == names


def test_changed_filters_wait_for_apply(page_env: PageEnv, dashboard: Page) -> None:
    queries = UserQueries(dashboard)
    total = page_env.viewer.total()
    failed = page_env.viewer.total({"status": "FAILED"})
    assert 0 < failed < total

    dashboard.get_by_label("Status", exact=True).select_option(label="Failed")
    dashboard.wait_for_timeout(600)
    assert queries.sent == []  # nothing happens until Apply filters
    expect(result_count(dashboard)).to_have_text(range_text(1, 10, total))

    apply(dashboard)
    expect(result_count(dashboard)).to_have_text(range_text(1, min(10, failed), failed))
    assert queries.last["filter"] == {"status": "FAILED"}
    badges = dashboard.locator("tbody tr td:last-child .badge")
    expect(badges).to_have_count(min(10, failed))
    assert set(badges.all_inner_texts()) == {"Failed"}


def test_search_applies_on_enter(page_env: PageEnv, dashboard: Page) -> None:
    queries = UserQueries(dashboard)
    target = page_env.viewer.users(first=20)["users"][13]["email"]
    fragment = target.split("@")[0].upper()  # the search ignores case
    expected = page_env.viewer.users({"emailContains": fragment})

    search = dashboard.get_by_label("Search by email")
    search.fill(fragment)
    dashboard.wait_for_timeout(400)
    assert queries.sent == []
    search.press("Enter")
    expect(result_count(dashboard)).to_have_text(
        range_text(1, len(expected["users"][:10]), expected["total"])
    )
    assert queries.last["filter"] == {"emailContains": fragment}
    assert target in emails(dashboard)


def test_one_match_reads_as_one_result(page_env: PageEnv, dashboard: Page) -> None:
    """Not "1-1 of 1 results"."""
    email = page_env.viewer.users(first=20)["users"][7]["email"]
    assert page_env.viewer.total({"emailContains": email}) == 1
    search = dashboard.get_by_label("Search by email")
    search.fill(email)
    search.press("Enter")
    expect(result_count(dashboard)).to_have_text("1 of 1 result")
    expect(dashboard.locator("tbody tr")).to_have_count(1)


def test_policy_filter(page_env: PageEnv, dashboard: Page) -> None:
    policies = page_env.viewer.policies()
    policy = next(p for p in policies if page_env.viewer.total({"policyId": p["id"]}))
    expected = page_env.viewer.users({"policyId": policy["id"]})
    dashboard.get_by_label("Policy", exact=True).select_option(label=policy["name"])
    apply(dashboard)
    expect(result_count(dashboard)).to_have_text(
        range_text(1, min(10, expected["total"]), expected["total"])
    )
    expect(dashboard.locator("tbody tr td:nth-child(3)")).to_have_text(
        [policy["name"]] * min(10, expected["total"])
    )


def test_dates_are_local_day_bounds(page_env: PageEnv, dashboard: Page) -> None:
    queries = UserQueries(dashboard)
    today = datetime.now(ZoneInfo(TIMEZONE)).date()
    start_day, end_day = today - timedelta(days=1), today
    dashboard.get_by_label("Start date").fill(start_day.isoformat())
    dashboard.get_by_label("End date").fill(end_day.isoformat())
    apply(dashboard)

    start, _ = local_day_bounds(start_day, TIMEZONE)
    _, end = local_day_bounds(end_day, TIMEZONE)
    assert start.endswith("T00:00:00.000+05:30") and end.endswith("T23:59:59.999+05:30")
    expected = page_env.viewer.total({"latestSyncFrom": start, "latestSyncTo": end})
    if expected:
        expect(result_count(dashboard)).to_have_text(range_text(1, min(10, expected), expected))
    else:
        expect(result_count(dashboard)).to_have_text("No users match")
        expect(dashboard.get_by_text("No users match these filters")).to_be_visible()
    assert queries.last["filter"] == {"latestSyncFrom": start, "latestSyncTo": end}


def test_start_date_after_end_date_is_refused(dashboard: Page) -> None:
    queries = UserQueries(dashboard)
    dashboard.get_by_label("Start date").fill("2026-03-10")
    dashboard.get_by_label("End date").fill("2026-03-01")
    apply(dashboard)
    expect(dashboard.get_by_text("Start date must be on or before End date.")).to_be_visible()
    assert queries.sent == []


def test_no_match_says_so(dashboard: Page) -> None:
    search = dashboard.get_by_label("Search by email")
    search.fill("no-such-user-anywhere")
    search.press("Enter")
    expect(result_count(dashboard)).to_have_text("No users match")
    expect(dashboard.get_by_text("No users match these filters")).to_be_visible()
    expect(dashboard.get_by_role("button", name="Next")).to_be_disabled()
    expect(dashboard.get_by_role("button", name="Previous")).to_be_disabled()


def test_clear_filters_resets_controls_and_rows(page_env: PageEnv, dashboard: Page) -> None:
    queries = UserQueries(dashboard)
    total = page_env.viewer.total()
    policy = page_env.viewer.policies()[0]
    dashboard.get_by_label("Search by email").fill("a")
    dashboard.get_by_label("Start date").fill("2020-01-01")
    dashboard.get_by_label("End date").fill("2030-12-31")
    dashboard.get_by_label("Policy", exact=True).select_option(label=policy["name"])
    dashboard.get_by_label("Status", exact=True).select_option(label="Synced")
    apply(dashboard)
    expect(result_count(dashboard)).not_to_have_text(range_text(1, 10, total))

    dashboard.get_by_role("button", name="Clear filters").click()
    expect(result_count(dashboard)).to_have_text(range_text(1, 10, total))
    expect(dashboard.get_by_label("Search by email")).to_have_value("")
    expect(dashboard.get_by_label("Start date")).to_have_value("")
    expect(dashboard.get_by_label("End date")).to_have_value("")
    expect(dashboard.get_by_label("Policy", exact=True).locator("option:checked")).to_have_text(
        "Select a policy"
    )
    expect(dashboard.get_by_label("Status", exact=True).locator("option:checked")).to_have_text(
        "Select status"
    )
    assert queries.last.get("filter") is None


def test_refresh_reloads_with_the_applied_filters_only(page_env: PageEnv, dashboard: Page) -> None:
    queries = UserQueries(dashboard)
    synced = page_env.viewer.total({"status": "SYNCED"})
    dashboard.get_by_label("Status", exact=True).select_option(label="Synced")
    apply(dashboard)
    expect(result_count(dashboard)).to_have_text(range_text(1, min(10, synced), synced))
    sent = len(queries.sent)

    dashboard.get_by_label("Search by email").fill("typed-but-not-applied")
    with dashboard.expect_response(is_users_query):
        dashboard.get_by_role("button", name="Refresh").click()
    expect(result_count(dashboard)).to_have_text(range_text(1, min(10, synced), synced))
    assert len(queries.sent) == sent + 1
    assert queries.last["filter"] == {"status": "SYNCED"}
    expect(dashboard.get_by_label("Search by email")).to_have_value("typed-but-not-applied")
    expect(dashboard.get_by_label("Status", exact=True)).to_have_value("SYNCED")


def test_results_per_page(page_env: PageEnv, dashboard: Page) -> None:
    total = page_env.viewer.total()
    assert total == MAIN_USERS
    rows = dashboard.locator("tbody tr")
    expect(rows).to_have_count(10)
    for size in (25, 50, 100, 10):
        dashboard.get_by_label("Results per page").select_option(str(size))
        shown = min(size, total)
        expect(result_count(dashboard)).to_have_text(range_text(1, shown, total))
        expect(rows).to_have_count(shown)
        expect(dashboard.get_by_role("button", name="Next")).to_be_enabled(enabled=size < total)
        expect(dashboard.get_by_role("button", name="Previous")).to_be_disabled()


def test_previous_and_next_walk_the_pages(page_env: PageEnv, dashboard: Page) -> None:
    everyone = [u["email"] for u in page_env.viewer.users(first=100)["users"]]
    total = len(everyone)
    queries = UserQueries(dashboard)
    previous = dashboard.get_by_role("button", name="Previous")
    following = dashboard.get_by_role("button", name="Next")
    expect(previous).to_be_disabled()

    starts = list(range(0, total, 10))
    for start in starts[1:]:
        following.click()
        last = min(start + 10, total)
        expect(result_count(dashboard)).to_have_text(range_text(start + 1, last, total))
        assert emails(dashboard) == everyone[start:last]
        assert queries.last.get("first") == 10 and queries.last.get("after")
    expect(following).to_be_disabled()
    expect(previous).to_be_enabled()

    for start in reversed(starts[:-1]):
        previous.click()
        expect(result_count(dashboard)).to_have_text(range_text(start + 1, start + 10, total))
        assert emails(dashboard) == everyone[start : start + 10]
        assert queries.last.get("last") == 10 and queries.last.get("before")
    expect(previous).to_be_disabled()
    expect(following).to_be_enabled()


def test_paging_with_the_keyboard_keeps_the_focus_on_the_pager(
    page_env: PageEnv, dashboard: Page
) -> None:
    """Enter on Next turns the page and Next keeps the focus, so Enter again turns the next
    one; on the last page the focus moves to Previous (Next is disabled)."""
    total = page_env.viewer.total()
    previous = dashboard.get_by_role("button", name="Previous")
    following = dashboard.get_by_role("button", name="Next")
    following.focus()
    for start in range(10, total, 10):
        dashboard.keyboard.press("Enter")
        expect(result_count(dashboard)).to_have_text(
            range_text(start + 1, min(start + 10, total), total)
        )
        expect(following if start + 10 < total else previous).to_be_focused()
    dashboard.keyboard.press("Enter")  # Previous, now focused
    expect(previous).to_be_focused()
    expect(following).to_be_enabled()


def test_search_fields_stop_at_what_the_api_accepts(dashboard: Page) -> None:
    """A longer text could only come back as an error."""
    expect(dashboard.get_by_label("Search by email")).to_have_attribute(
        "maxlength", str(SEARCH_MAX)
    )
    expect(dashboard.locator("#filter-error-code")).to_have_attribute("maxlength", str(CODE_MAX))


def test_the_applied_filter_is_kept_in_the_address(page_env: PageEnv, dashboard: Page) -> None:
    """Applied filters and the page size go in the query string: a reload (or the link, sent
    to a colleague) opens the same view; Clear filters takes them out. The token never
    appears in it."""
    policies = page_env.viewer.policies()
    policy = next(p for p in policies if page_env.viewer.total({"policyId": p["id"]}))
    wanted = {"policyId": policy["id"], "emailContains": "a"}
    total = page_env.viewer.total(wanted)
    dashboard.get_by_label("Policy", exact=True).select_option(label=policy["name"])
    dashboard.get_by_label("Search by email").fill("a")
    apply(dashboard)
    dashboard.get_by_label("Results per page").select_option("25")
    expect(result_count(dashboard)).to_have_text(range_text(1, min(25, total), total))
    address = dashboard.url
    assert "policy=" in address and "email=a" in address and "size=25" in address, address
    assert page_env.viewer_token not in address

    queries = UserQueries(dashboard)
    dashboard.reload()
    expect(result_count(dashboard)).to_have_text(range_text(1, min(25, total), total))
    assert queries.sent[0] == {"filter": wanted, "first": 25}, queries.sent  # the first read
    expect(dashboard.get_by_label("Policy", exact=True).locator("option:checked")).to_have_text(
        policy["name"]
    )
    expect(dashboard.get_by_label("Search by email")).to_have_value("a")
    expect(dashboard.locator("#filters-note")).to_be_hidden()  # nothing pending

    dashboard.get_by_role("button", name="Clear filters").click()
    expect(result_count(dashboard)).to_have_text(re.compile(r" of \d+ results?$"))
    assert "policy=" not in dashboard.url and "email=" not in dashboard.url, dashboard.url


def test_an_address_with_odd_filters_opens_without_them(
    page_env: PageEnv, new_page: Callable[[], Page]
) -> None:
    """A hand-edited link: an unknown status, a malformed date and page size are left out,
    not sent; what is valid applies from the first read."""
    page = new_page()
    queries = UserQueries(page)
    page.goto(
        f"{page_env.url}/?status=BOGUS&start=2026-13-45&size=7&email=%20a%20"
        f"#token={page_env.viewer_token}"
    )
    total = page_env.viewer.total({"emailContains": "a"})
    expect(result_count(page)).to_have_text(range_text(1, min(10, total), total))
    assert queries.sent[0] == {"filter": {"emailContains": "a"}, "first": 10}, queries.sent
    expect(page.get_by_label("Status", exact=True)).to_have_value("")


def test_result_count_is_announced(dashboard: Page) -> None:
    expect(result_count(dashboard)).to_have_attribute("aria-live", "polite")
