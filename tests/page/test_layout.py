"""The page at a desktop width (1280 px) and a phone width (390 px): nothing is cut off or
overflows, every column of a row can be read, and the screenshots are kept in test-artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.page.conftest import screenshot

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


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_fits_its_width(dashboard: Page, width: int) -> None:
    dashboard.set_viewport_size({"width": width, "height": 900 if width > 500 else 844})
    dashboard.wait_for_timeout(300)
    screenshot_full(dashboard, f"layout-{width}.png")
    assert horizontal_overflow(dashboard) == []
    row = dashboard.locator("#users-body tr.user-row").first
    for cell in ("cell-user", "cell-date", "cell-policy", "cell-status"):
        expect(row.locator(f"td.{cell}")).to_be_in_viewport()
    for button in ("Apply filters", "Clear filters", "Refresh"):
        expect(dashboard.get_by_role("button", name=button)).to_be_in_viewport()


def screenshot_full(page: Page, name: str) -> None:
    screenshot(page, name)
    page.screenshot(path=str(screenshot.__globals__["ARTIFACTS"] / f"full-{name}"), full_page=True)
