"""The page at a desktop width (1280 px) and a phone width (390 px): nothing is cut off or
overflows, every column of a row can be read, and the screenshots are kept in test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests.page.conftest import ARTIFACTS, PageEnv, open_dashboard, screenshot
from tests.page.test_panel import live_user

OVERFLOW = """() => {
  const root = document.documentElement;
  const width = root.clientWidth;
  const out = [];
  if (root.scrollWidth > width) out.push(`page scrolls to ${root.scrollWidth}px`);
  for (const el of document.querySelectorAll("#main *, .page-header *")) {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || el.closest("[hidden]")) continue;
    if (r.right > width + 0.5 || r.left < -0.5) {
      out.push(`${el.tagName}#${el.id}.${el.className} ${r.left | 0}..${r.right | 0}`);
    }
  }
  return out.slice(0, 20);
}"""


def horizontal_overflow(page: Page) -> list[str]:
    """Visible elements reaching past the viewport's edges (or the page scrolling sideways)."""
    return page.evaluate(OVERFLOW)


@pytest.fixture
def operator_page(page_env: PageEnv, new_page: Callable[[], Page]) -> Page:
    """The live tenant as an operator: every element the page has is on it."""
    return open_dashboard(new_page(), page_env.url, page_env.live_operator_token)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_fits_its_width(page_env: PageEnv, operator_page: Page, width: int) -> None:
    page = operator_page
    # A failure, so the failure reasons (where served) have a row to lay out.
    run = page_env.live_worker.start_run(live_user(page_env, 7)["id"], items_total=3)
    page_env.live_worker.finish(
        run["id"],
        error_code="ERR_LAYOUT_AUTH",
        error_message="Source mailbox refused the token",
    )
    page.get_by_role("button", name="Refresh").click()
    page.set_viewport_size({"width": width, "height": 900 if width > 500 else 844})
    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#users-body tr.user-row").first).to_be_visible()
    page.wait_for_timeout(300)
    screenshot_full(page, f"layout-{width}.png")
    assert horizontal_overflow(page) == []
    row = page.locator("#users-body tr.user-row").first
    row.scroll_into_view_if_needed()
    for cell in ("cell-user", "cell-date", "cell-policy", "cell-status"):
        expect(row.locator(f"td.{cell}")).to_be_in_viewport()
    for button in ("Apply filters", "Clear filters", "Refresh", "Export CSV"):
        page.get_by_role("button", name=button).scroll_into_view_if_needed()
        expect(page.get_by_role("button", name=button)).to_be_in_viewport()

    # The detail panel takes the whole width on a phone and nothing in it overflows.
    row.click()
    details = page.locator("#panel")
    expect(details).to_contain_text("Sync history")
    page.wait_for_timeout(300)  # the slide-in transition
    box = details.bounding_box()
    assert box is not None and box["x"] >= -0.5 and box["x"] + box["width"] <= width + 0.5
    screenshot(page, f"layout-{width}-panel.png")


def test_on_a_phone_back_closes_the_panel_not_the_page(dashboard: Page) -> None:
    """The panel covers a phone's whole screen, so Back is how people leave it: Back closes
    it and stays on the page; closing it with its own button leaves no entry behind."""
    page = dashboard
    page.set_viewport_size({"width": 390, "height": 844})
    address = page.url
    details = page.locator("#panel")
    rows = page.locator("#users-body tr.user-row")
    rows.nth(0).click()
    expect(details).to_be_visible()
    page.go_back()
    expect(details).to_be_hidden()
    assert page.url == address
    expect(rows.first).to_be_visible()

    rows.nth(1).click()
    expect(details).to_be_visible()
    page.locator("#panel-close").click()
    expect(details).to_be_hidden()
    page.wait_for_timeout(300)  # the history.back() of the close, if any, has run
    assert page.url == address
    rows.nth(2).click()  # and the next Back again closes only the panel
    expect(details).to_be_visible()
    page.go_back()
    expect(details).to_be_hidden()
    assert page.url == address


def screenshot_full(page: Page, name: str) -> None:
    screenshot(page, name)
    page.screenshot(path=str(ARTIFACTS / f"full-{name}"), full_page=True)


MOTION = """() => {
  const probe = document.createElement("div");
  probe.innerHTML = '<span class="badge badge-IN_PROGRESS">x</span>'
    + '<span class="progress indeterminate"><span class="progress-bar"></span></span>'
    + '<span class="metric-value flash">1</span>';
  document.body.append(probe);
  const [badge, , bar, value] = probe.querySelectorAll("span");
  const found = {
    pulse: getComputedStyle(badge, "::before").animationName,
    sweep: getComputedStyle(bar).animationName,
    flash: getComputedStyle(value).animationName,
  };
  probe.remove();
  return found;
}"""


def test_indicators_move_only_for_those_who_allow_motion(operator_page: Page) -> None:
    """A run in progress pulses, an unknown total sweeps, a new value flashes; with the OS's
    reduced-motion preference each stands still (WCAG 2.3.3) and keeps its colour."""
    operator_page.emulate_media(reduced_motion="no-preference")
    assert operator_page.evaluate(MOTION) == {
        "pulse": "pulse",
        "sweep": "slide",
        "flash": "flash-text",
    }
    operator_page.emulate_media(reduced_motion="reduce")
    assert operator_page.evaluate(MOTION) == {"pulse": "none", "sweep": "none", "flash": "none"}
