"""One request cannot take the whole read pool: its fields resolve concurrently, but it holds
at most app.web.context.READS_AT_ONCE read sessions at a time, so a document of many aliased
counts waits for its own sessions while other requests get theirs (the SQLite read pool has 4
connections; a request of 100 new email searches held them all for seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.pool import Pool

from app.web.context import READS_AT_ONCE
from tests.conftest import Tenant

ALIASES = 30


@pytest.fixture
def checked_out() -> Iterator[list[int]]:
    """[connections checked out of any pool now, the most at once]."""
    counts = [0, 0]

    def checkout(*_: Any) -> None:
        counts[0] += 1
        counts[1] = max(counts)

    def checkin(*_: Any) -> None:
        counts[0] -= 1

    event.listen(Pool, "checkout", checkout)
    event.listen(Pool, "checkin", checkin)
    try:
        yield counts
    finally:
        event.remove(Pool, "checkout", checkout)
        event.remove(Pool, "checkin", checkin)


async def test_a_request_of_many_counts_holds_at_most_two_read_sessions(
    tenant: Tenant, checked_out: list[int]
) -> None:
    searches = " ".join(
        f'a{i}: syncUsers(first: 1, filter: {{emailContains: "term{i}"}}) {{ totalCount }}'
        for i in range(ALIASES)
    )
    await tenant.viewer.execute("{ viewer { role } }")  # the token is checked and cached
    checked_out[1] = checked_out[0]
    data = await tenant.viewer.execute("{ " + searches + " }")
    assert [data[f"a{i}"]["totalCount"] for i in range(ALIASES)] == [0] * ALIASES
    # One more for whatever the app's background tasks read meanwhile (rarely anything).
    assert checked_out[1] <= READS_AT_ONCE + 1, checked_out
