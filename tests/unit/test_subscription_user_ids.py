"""syncUserUpdated's userIds as the hub gets them (subscriptions/streams.py): each user once,
in ascending order, in a tuple (what every open dashboard keeps for its life)."""

from __future__ import annotations

import pytest

from app.domain.errors import BadUserInput
from app.domain.ids import encode_id
from subscriptions.streams import MAX_USER_IDS, parse_user_ids


def ids(*numbers: int) -> list[str]:
    return [encode_id("SyncUser", n) for n in numbers]


def test_each_user_once_in_ascending_order() -> None:
    assert parse_user_ids(ids(7, 3, 7, 12, 3)) == (3, 7, 12)
    assert parse_user_ids([]) == ()
    assert parse_user_ids(None) is None  # the whole tenant


def test_too_many_or_foreign_ids_are_bad_input() -> None:
    with pytest.raises(BadUserInput):
        parse_user_ids(ids(*range(1, MAX_USER_IDS + 2)))
    with pytest.raises(BadUserInput):
        parse_user_ids([encode_id("Policy", 1)])
