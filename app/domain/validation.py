"""Input checks shared by every writer (API, simulator, CLI): clear BAD_USER_INPUT errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.domain.errors import BadUserInput

# The longest value each kind of field takes; the tables' columns (app.store.models) are this wide.
EMAIL_MAX = 254
NAME_MAX = 200
TEXT_MAX = 2000
CODE_MAX = 100
ITEM_ID_MAX = 500

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SERVICES = ("MAIL", "CALENDAR", "CONTACTS", "DRIVE")
RUN_KINDS = ("INITIAL", "DELTA")
MIN_INTERVAL, MAX_INTERVAL = 15, 10080
MAX_FAILED_ITEMS_PER_CALL = 1000
MAX_USERS_PER_CALL = 1000
MAX_CLAIMS_PER_CALL = 100  # claimDueSyncRuns(limit:)
SEARCH_MAX = 254
# A run's cumulative counters (items, changes): far above any mailbox (the largest hold tens of
# millions of items), and far enough below 2^31 that no sum of a few of them wraps a reader.
MAX_COUNTER = 1_000_000_000
MAX_TOKEN_LIFETIME_DAYS = 3650  # an API token's expiry, from its creation


@dataclass(frozen=True, slots=True)
class FailedItemInput:
    item_id: str
    item_type: str
    error_code: str
    error_message: str


def storable(value: str, field: str) -> str:
    """Text both databases can store and compare: PostgreSQL refuses NUL characters, and
    neither encodes lone surrogates (JSON can carry both)."""
    if "\x00" in value:
        raise BadUserInput(f"{field} must not contain NUL characters.")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadUserInput(f"{field} is not valid Unicode.") from None
    return value


# Control characters (Unicode category Cc) and the line and paragraph separators: in a name,
# an email or a code they forge lines and terminal escapes in what operators read (`syncstatus
# audit`, `token list`, logs). Multi-line texts (descriptions, error messages) keep tab, LF
# and CR.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROLS_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def text(
    value: str, field: str, max_length: int, *, allow_empty: bool = False, lines: bool = False
) -> str:
    value = storable(value, field).strip()
    control = (_CONTROLS_BUT_LINES if lines else _CONTROLS).search(value)
    if control is not None:
        raise BadUserInput(
            f"{field} must not contain control characters (U+{ord(control.group()):04X})."
        )
    if not value and not allow_empty:
        raise BadUserInput(f"{field} must not be empty.")
    if len(value) > max_length:
        raise BadUserInput(f"{field} is longer than {max_length} characters.")
    return value


def email(value: str, field: str = "email") -> str:
    value = text(value, field, EMAIL_MAX).lower()
    if not EMAIL_RE.match(value):
        raise BadUserInput(f"{field} is not a valid email address: {value!r}.")
    return value


def name(value: str, field: str = "name") -> str:
    return text(value, field, NAME_MAX)


def optional_text(value: str | None, field: str, max_length: int = TEXT_MAX) -> str | None:
    """A multi-line text (a description, an error message), or None."""
    if value is None:
        return None
    return text(value, field, max_length, allow_empty=True, lines=True) or None


def error_code(value: str, field: str = "errorCode") -> str:
    return text(value, field, CODE_MAX)


def counter(value: int | None, field: str) -> None:
    if value is not None and value < 0:
        raise BadUserInput(f"{field} must not be negative (got {value}).")
    if value is not None and value > MAX_COUNTER:
        raise BadUserInput(f"{field} must be at most {MAX_COUNTER} (got {value}).")


def interval(minutes: int) -> int:
    if not MIN_INTERVAL <= minutes <= MAX_INTERVAL:
        raise BadUserInput(
            f"syncIntervalMinutes must be between {MIN_INTERVAL} and {MAX_INTERVAL}."
        )
    return minutes


def services(values: list[str]) -> tuple[str, ...]:
    if not values:
        raise BadUserInput("services must name at least one service.")
    unique = tuple(dict.fromkeys(values))
    unknown = [s for s in unique if s not in SERVICES]
    if unknown:
        raise BadUserInput(f"Unknown services: {unknown}.")
    return unique


def failed_items(items: list[FailedItemInput] | None) -> list[FailedItemInput]:
    if not items:
        return []
    if len(items) > MAX_FAILED_ITEMS_PER_CALL:
        raise BadUserInput(f"At most {MAX_FAILED_ITEMS_PER_CALL} failed items per call.")
    return [
        FailedItemInput(
            item_id=text(item.item_id, "itemId", ITEM_ID_MAX),
            item_type=text(item.item_type, "itemType", CODE_MAX),
            error_code=error_code(item.error_code),
            error_message=text(item.error_message, "errorMessage", TEXT_MAX, lines=True),
        )
        for item in items
    ]


def search(value: str | None) -> str | None:
    if value is None:
        return None
    value = storable(value, "emailContains").strip().lower()
    if len(value) > SEARCH_MAX:
        raise BadUserInput(f"emailContains is longer than {SEARCH_MAX} characters.")
    return value or None
