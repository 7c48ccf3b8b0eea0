"""While a filter is applied, live updates that take rows out of it are announced
("2 rows no longer match — Refresh") instead of silently showing them under the filter."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.page.conftest import PageEnv, result_count, screenshot
from tests.page.helpers import range_text
from tests.page.test_panel import live_user, row


def fail(page_env: PageEnv, user_id: str) -> None:
    run = page_env.live_worker.start_run(user_id, items_total=10)
    page_env.live_worker.finish(
        run["id"], error_code="ERR_STALE_TEST", error_message="Mailbox locked"
    )


def test_rows_that_stop_matching_are_announced_until_refresh(
    page_env: PageEnv, live_dashboard: Page
) -> None:
    page = live_dashboard
    users = [live_user(page_env, 1), live_user(page_env, 2)]
    for user in users:
        fail(page_env, user["id"])
    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Apply filters").click()
    failed_total = page_env.live_viewer.total({"status": "FAILED"})
    expect(result_count(page)).to_have_text(range_text(1, min(10, failed_total), failed_total))
    for user in users:
        expect(row(page, user["email"])).to_be_visible()
    note = page.locator("#stale-note")
    expect(note).to_be_hidden()
    page_env.wait_for_subscribers()

    page_env.live_worker.start_run(users[0]["id"])
    expect(note).to_have_text("1 row no longer matches — Refresh")
    expect(row(page, users[0]["email"])).to_have_class(re.compile(r"\bstale\b"))
    page_env.live_worker.start_run(users[1]["id"])
    expect(note).to_have_text("2 rows no longer match — Refresh")
    screenshot(page, "stale-rows.png")

    note.get_by_role("button", name="Refresh").click()
    expect(note).to_be_hidden()
    for user in users:
        expect(row(page, user["email"])).to_have_count(0)
    now_failed = failed_total - 2
    expect(result_count(page)).to_have_text(
        range_text(1, min(10, now_failed), now_failed) if now_failed else "No users match"
    )


def test_without_a_filter_live_updates_announce_nothing(
    page_env: PageEnv, live_dashboard: Page
) -> None:
    page = live_dashboard
    user = live_user(page_env, 0)
    page_env.wait_for_subscribers()
    page_env.live_worker.start_run(user["id"])
    expect(row(page, user["email"]).locator(".badge").first).to_have_text("In Progress")
    expect(page.locator("#stale-note")).to_be_hidden()
