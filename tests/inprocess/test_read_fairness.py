"""One request cannot take the whole read pool: its fields resolve concurrently, but it holds
at most app.web.context.READS_AT_ONCE read sessions at a time, so a document of many aliased
counts waits for its own sessions while other requests get theirs (the SQLite read pool has 4
connections; a request of 100 new email searches held them all for seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.pool import Pool

from app.web.context import READS_AT_ONCE
from tests.conftest import Tenant

ALIASES = 30
# Set in the test's task: the in-process app's request tasks inherit it, and SQLAlchemy's
# greenlets carry it to the pool's events.
IN_REQUEST: ContextVar[bool] = ContextVar("IN_REQUEST", default=False)


@pytest.fixture
def checked_out() -> Iterator[list[int]]:
    """[connections the request has checked out now, the most at once]. Counted by connection
    and only while IN_REQUEST is set: the app's background tasks (started before it) read too,
    and a connection they return in between must not lower the count (a plain counter went
    to -1 there, and the SQLite pool's 4 read as 3: the test passed on the old code)."""
    out: set[int] = set()
    counts = [0, 0]

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        if not IN_REQUEST.get():
            return
        out.add(id(dbapi_connection))
        counts[0] = len(out)
        counts[1] = max(counts)

    def checkin(dbapi_connection: Any, *_: Any) -> None:
        out.discard(id(dbapi_connection))
        counts[0] = len(out)

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
    IN_REQUEST.set(True)
    data = await tenant.viewer.execute("{ " + searches + " }")
    assert [data[f"a{i}"]["totalCount"] for i in range(ALIASES)] == [0] * ALIASES
    assert 1 <= checked_out[1] <= READS_AT_ONCE, checked_out
