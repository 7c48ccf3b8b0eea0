"""app.domain.validation: every writer's input checks, each a clear BAD_USER_INPUT."""

from __future__ import annotations

import pytest

from app.domain import validation
from app.domain.errors import BadUserInput
from app.domain.validation import CODE_MAX, EMAIL_MAX, NAME_MAX, FailedItemInput


@pytest.mark.parametrize(("value", "message"), [("a\x00b", "NUL"), ("a\ud800", "Unicode")])
def test_text_neither_database_can_store_is_refused(value: str, message: str) -> None:
    with pytest.raises(BadUserInput, match=message):
        validation.storable(value, "name")


def test_text_is_trimmed_and_bounded() -> None:
    assert validation.name("  Sales  ") == "Sales"
    assert validation.name("x" * NAME_MAX) == "x" * NAME_MAX
    with pytest.raises(BadUserInput, match="longer than"):
        validation.name("x" * (NAME_MAX + 1))
    with pytest.raises(BadUserInput, match="must not be empty"):
        validation.name("   ")
    assert validation.optional_text("   ", "description") is None
    assert validation.optional_text(None, "description") is None


def test_emails_are_lowercased_and_checked() -> None:
    assert validation.email(" Maria.Garcia@Contoso.COM ") == "maria.garcia@contoso.com"
    for bad in ("maria", "maria@contoso", "a b@c.de", "@c.de", "a@@c.de"):
        with pytest.raises(BadUserInput, match="not a valid email"):
            validation.email(bad)
    with pytest.raises(BadUserInput, match="longer than"):
        validation.email("a" * EMAIL_MAX + "@c.de")


def test_counters_must_not_be_negative() -> None:
    validation.counter(None, "itemsTotal")
    validation.counter(0, "itemsTotal")
    with pytest.raises(BadUserInput, match=r"itemsTotal must not be negative \(got -1\)"):
        validation.counter(-1, "itemsTotal")


def test_sync_interval_bounds() -> None:
    assert validation.interval(validation.MIN_INTERVAL) == validation.MIN_INTERVAL
    assert validation.interval(validation.MAX_INTERVAL) == validation.MAX_INTERVAL
    for bad in (validation.MIN_INTERVAL - 1, validation.MAX_INTERVAL + 1, 0, -60):
        with pytest.raises(BadUserInput, match="syncIntervalMinutes"):
            validation.interval(bad)


def test_services_are_deduplicated_in_order_and_known() -> None:
    assert validation.services(["DRIVE", "MAIL", "DRIVE"]) == ("DRIVE", "MAIL")
    with pytest.raises(BadUserInput, match="at least one"):
        validation.services([])
    with pytest.raises(BadUserInput, match="Unknown services"):
        validation.services(["MAIL", "FAX"])


def _item(item_id: str = "msg-1", code: str = "ERR_SIZE") -> FailedItemInput:
    return FailedItemInput(item_id, "message", code, "too big")


def test_failed_items_are_cleaned_and_bounded() -> None:
    assert validation.failed_items(None) == []
    assert validation.failed_items([]) == []
    assert validation.failed_items([_item(" msg-1 ")]) == [_item("msg-1")]
    with pytest.raises(BadUserInput, match="errorCode is longer"):
        validation.failed_items([_item(code="E" * (CODE_MAX + 1))])
    with pytest.raises(BadUserInput, match="itemId must not be empty"):
        validation.failed_items([_item("")])
    many = [_item(f"m{i}") for i in range(validation.MAX_FAILED_ITEMS_PER_CALL + 1)]
    with pytest.raises(BadUserInput, match="At most 1000 failed items"):
        validation.failed_items(many)
    assert len(validation.failed_items(many[:-1])) == validation.MAX_FAILED_ITEMS_PER_CALL


def test_search_terms() -> None:
    assert validation.search(None) is None
    assert validation.search("   ") is None
    assert validation.search(" MaRia ") == "maria"
    assert validation.search("x" * validation.SEARCH_MAX) == "x" * validation.SEARCH_MAX
    with pytest.raises(BadUserInput, match="emailContains is longer"):
        validation.search("x" * (validation.SEARCH_MAX + 1))
    with pytest.raises(BadUserInput, match="NUL"):
        validation.search("a\x00")
