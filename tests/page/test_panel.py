"""The "Sync details" side panel, the errors modal, and keyboard use."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests.page.conftest import PageEnv, screenshot
from tests.page.helpers import STATUS_LABELS

FAILED_ITEM = {
    "itemId": "msg-7f3a-oversized",
    "itemType": "message",
    "errorCode": "ERR_ITEM_SIZE",
    "errorMessage": "Message exceeds the destination size limit",
}
WARNING_ITEM = {
    "itemId": "folder/Archive:2019",
    "itemType": "folder",
    "errorCode": "ERR_FOLDER_NAME",
    "errorMessage": "Folder name contains characters not allowed in labels",
}


LIVE_FIRST = 12


def panel(page: Page) -> Locator:
    return page.get_by_role("dialog", name="Sync details")


def section(details: Locator, heading: str | re.Pattern[str]) -> Locator:
    """A part of the panel by its heading."""
    return details.locator("section", has=details.page.get_by_role("heading", name=heading))


def row(page: Page, email: str) -> Locator:
    return page.locator("tbody tr").filter(has=page.get_by_role("cell", name=email, exact=True))


def show_only(page: Page, email: str) -> Locator:
    search = page.get_by_label("Search by email")
    search.fill(email)
    search.press("Enter")
    expect(page.locator("tbody tr")).to_have_count(1)
    return row(page, email)


def live_user(env: PageEnv, index: int) -> dict[str, Any]:
    """A user of the live tenant with no run running (so the worker can start one)."""
    user = env.live_viewer.users(first=LIVE_FIRST)["users"][index]
    env.live_worker.make_idle(user)
    return env.live_viewer.user(user["id"])


def test_row_click_opens_the_panel_and_another_row_switches_it(
    page_env: PageEnv, dashboard: Page
) -> None:
    users = page_env.viewer.users(first=10)["users"]
    first, second = users[0], users[1]
    details = panel(dashboard)
    expect(details).to_be_hidden()

    row(dashboard, first["email"]).click()
    expect(details).to_be_visible()
    expect(details.get_by_role("heading", name="Sync details")).to_be_visible()
    expect(details.locator("[data-role=source-email]")).to_have_text(first["email"])
    expect(details.locator("[data-role=destination-email]")).to_have_text(first["destinationEmail"])
    expect(details.get_by_text("Source", exact=True)).to_be_visible()
    expect(details.get_by_text("Destination", exact=True)).to_be_visible()
    for label in ("Sync status", "Policy", "Latest sync", "Next scheduled sync"):
        expect(details.locator("dt", has_text=re.compile(f"^{label}$"))).to_be_visible()
    overview = details.locator("dd").first
    expect(overview.locator(".badge").first).to_have_text(STATUS_LABELS[first["status"]])
    if first["policy"]:
        state = "Active" if first["policy"]["active"] else "Inactive"
        expect(details.get_by_text(state, exact=True)).to_be_visible()
    expect(details.get_by_role("heading", name=re.compile("^Sync history"))).to_be_visible()
    # The table stays visible and usable beside the panel.
    expect(dashboard.get_by_role("table")).to_be_visible()
    screenshot(dashboard, "panel.png")

    row(dashboard, second["email"]).click()
    expect(details.locator("[data-role=source-email]")).to_have_text(second["email"])

    details.get_by_role("button", name="Close panel").click()
    expect(details).to_be_hidden()
    expect(row(dashboard, second["email"])).to_be_focused()


def test_keyboard_opens_with_enter_or_space_and_esc_closes(
    page_env: PageEnv, dashboard: Page
) -> None:
    users = page_env.viewer.users(first=10)["users"]
    details = panel(dashboard)

    first_row = row(dashboard, users[2]["email"])
    first_row.focus()
    dashboard.keyboard.press("Enter")
    expect(details).to_be_visible()
    expect(details.locator("[data-role=source-email]")).to_have_text(users[2]["email"])
    assert details.evaluate("el => el.contains(document.activeElement)")  # focus moved in
    dashboard.keyboard.press("Escape")
    expect(details).to_be_hidden()
    expect(first_row).to_be_focused()  # and back to the row

    second_row = row(dashboard, users[3]["email"])
    second_row.focus()
    dashboard.keyboard.press(" ")
    expect(details.locator("[data-role=source-email]")).to_have_text(users[3]["email"])
    dashboard.keyboard.press("Escape")
    expect(details).to_be_hidden()
    expect(second_row).to_be_focused()


def test_escape_in_the_search_box_is_the_search_box_s(page_env: PageEnv, dashboard: Page) -> None:
    """Typing a search with the panel open: Escape clears the search (as a search box does)
    and leaves the panel and the focus where they are."""
    users = page_env.viewer.users(first=10)["users"]
    details = panel(dashboard)
    row(dashboard, users[1]["email"]).click()
    expect(details).to_be_visible()
    search = dashboard.get_by_label("Search by email")
    search.click()
    search.press_sequentially("alex")
    dashboard.keyboard.press("Escape")
    expect(search).to_have_value("")
    expect(search).to_be_focused()
    expect(details).to_be_visible()


def test_failures_alert_and_errors_modal(page_env: PageEnv, live_dashboard: Page) -> None:
    worker = page_env.live_worker
    user = live_user(page_env, 1)
    for message in ("Authentication token expired", "Mailbox is on litigation hold"):
        run = worker.start_run(user["id"], items_total=40)
        worker.report(run["id"], processed=5, changes=1)
        code = "ERR_TOKEN_001" if "token" in message else "ERR_HOLD_042"
        worker.finish(run["id"], error_code=code, error_message=message, failed_items=[FAILED_ITEM])
    count = page_env.live_viewer.user(user["id"])["unresolvedFailureCount"]
    assert count >= 2

    page = live_dashboard
    show_only(page, user["email"]).click()
    details = panel(page)
    expect(details.get_by_text(f"{count} sync failures detected")).to_be_visible()
    expect(details.locator(".badge").first).to_have_text("Source")

    view = details.get_by_role("button", name="View errors")
    view.click()
    modal = page.get_by_role("dialog", name="Sync errors")
    expect(modal).to_be_visible()
    for text in (
        "Authentication token expired",
        "ERR_TOKEN_001",
        "Mailbox is on litigation hold",
        "ERR_HOLD_042",
        FAILED_ITEM["errorMessage"],
        FAILED_ITEM["errorCode"],
    ):
        expect(modal.get_by_text(text, exact=True).first).to_be_visible()
    screenshot(page, "errors-modal.png")

    # Focus stays inside the modal.
    for _ in range(6):
        page.keyboard.press("Tab")
        assert modal.evaluate("el => el.contains(document.activeElement)")
    page.keyboard.press("Shift+Tab")
    assert modal.evaluate("el => el.contains(document.activeElement)")

    # Esc closes the modal first, then the panel.
    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()
    expect(details).to_be_visible()
    expect(view).to_be_focused()
    page.keyboard.press("Escape")
    expect(details).to_be_hidden()
    expect(row(page, user["email"])).to_be_focused()


def test_last_activity_and_items_needing_attention(page_env: PageEnv, live_dashboard: Page) -> None:
    worker = page_env.live_worker
    user = live_user(page_env, 2)
    run = worker.start_run(user["id"], items_total=120)
    worker.report(run["id"], processed=60, changes=9, failed_items=[WARNING_ITEM])
    worker.report(run["id"], processed=120, changes=17)
    assert worker.finish(run["id"])["state"] == "COMPLETED_WITH_WARNING"

    page = live_dashboard
    show_only(page, user["email"]).click()
    details = panel(page)
    expect(details.locator("dd .badge").first).to_have_text("Completed with Warning")
    activity = section(details, "Last sync activity")
    expect(activity.locator("dd", has_text="Mail")).to_be_visible()
    expect(activity.get_by_text("120 of 120", exact=True)).to_be_visible()
    expect(activity.get_by_text("17", exact=True)).to_be_visible()  # changes
    expect(activity.get_by_text("1", exact=True)).to_be_visible()  # items failed
    attention = section(details, "Items needing attention")
    expect(attention.get_by_text(WARNING_ITEM["itemId"])).to_be_visible()
    expect(attention.get_by_text(WARNING_ITEM["errorMessage"])).to_be_visible()
    expect(attention.get_by_text(WARNING_ITEM["errorCode"])).to_be_visible()
    history = section(details, re.compile("^Sync history"))
    expect(history.locator("li").first.locator(".badge")).to_have_text("Completed with Warning")
