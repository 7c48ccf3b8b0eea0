"""app.reads.pagination: cursors bound to their list and tenant, page sizes, and keyset pages
over a real SQLite table, forward and backward, against a plain sort of the same rows."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import insert, select

from app.domain.errors import BadUserInput
from app.reads.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PageArgs,
    decode_cursor,
    encode_cursor,
    keyset_page,
    page_size,
)
from app.reads.runs import POLICIES, RUNS
from app.reads.users import ORDERS
from app.store.engine import Database
from app.store.models import Policy, Tenant
from tests.server import open_sqlite

EMAIL = ORDERS["EMAIL_ASC"]


def test_a_cursor_round_trips_and_is_opaque() -> None:
    cursor = encode_cursor(EMAIL.tag, 7, ("maria@contoso.example", 42))
    assert "=" not in cursor and "maria" not in cursor
    assert decode_cursor(cursor, EMAIL, 7) == ("maria@contoso.example", 42)


def _forged(value: Any) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        ("", "Malformed cursor"),
        ("x" * 1001, "Malformed cursor"),
        ("!!!", "Malformed cursor"),
        (base64.urlsafe_b64encode(b"\xff").decode(), "Malformed cursor"),
        (_forged({"u.email": 1}), "does not belong"),
        (encode_cursor("r", 7, (1,)), "does not belong"),  # another list's cursor
        (encode_cursor("u.email", 8, ("a", 1)), "does not belong"),  # another tenant's
        (_forged(["u.email", 7, "a"]), "does not belong"),  # a key part missing
        (_forged(["u.email", 7, 1, "a"]), "does not belong"),  # key parts of wrong types
        (_forged(["u.email", 7, "a", True]), "does not belong"),  # a bool is not an id
        (_forged(["u.email", 7, "a", 2**31]), "does not belong"),  # beyond INTEGER
        (_forged(["u.email", 7, "a\u0000", 1]), "does not belong"),
        (_forged(["u.email", 7, "\ud800", 1]), "does not belong"),
    ],
)
def test_foreign_and_forged_cursors_are_refused(cursor: str, message: str) -> None:
    with pytest.raises(BadUserInput, match=message):
        decode_cursor(cursor, EMAIL, 7)


def test_big_integer_keys_have_the_wider_range() -> None:
    latest = ORDERS["LATEST_SYNC_DESC"]
    cursor = encode_cursor(latest.tag, 1, (2**40, 5))
    assert decode_cursor(cursor, latest, 1) == (2**40, 5)


def test_page_sizes() -> None:
    assert page_size(PageArgs()) == (DEFAULT_PAGE_SIZE, True)
    assert page_size(PageArgs(before="c")) == (DEFAULT_PAGE_SIZE, False)
    assert page_size(PageArgs(after="c", before="c")) == (DEFAULT_PAGE_SIZE, True)
    assert page_size(PageArgs(first=1)) == (1, True)
    assert page_size(PageArgs(last=MAX_PAGE_SIZE)) == (MAX_PAGE_SIZE, False)
    for bad in (0, -1, MAX_PAGE_SIZE + 1):
        with pytest.raises(BadUserInput, match="between 1 and 100"):
            page_size(PageArgs(first=bad))
    with pytest.raises(BadUserInput, match="either first or last"):
        page_size(PageArgs(first=1, last=1))


NAMES = ["b", "a", "c", "a2", "b", "d", "e"]  # policy names need not be unique across tenants


@pytest.fixture(scope="module")
async def policies() -> AsyncIterator[tuple[Database, int, list[tuple[str, int]]]]:
    async with open_sqlite() as db:
        async with db.write() as session:
            tenants = [Tenant(name=f"t{i}", created_at=0) for i in range(2)]
            session.add_all(tenants)
            await session.flush()
            rows = [
                {
                    "tenant_id": tenants[i % 2].id,
                    "name": f"{name}-{i}",
                    "active": True,
                    "sync_interval_minutes": 60,
                    "services": "MAIL",
                    "user_count": 0,
                    "revision": 0,
                    "created_at": 0,
                    "updated_at": 0,
                }
                for i, name in enumerate(NAMES * 3)
            ]
            await session.execute(insert(Policy), rows)
        tenant = tenants[0].id
        async with db.read() as session:
            found = await session.execute(
                select(Policy.name, Policy.id).where(Policy.tenant_id == tenant)
            )
            expected = sorted((name, row_id) for name, row_id in found.all())
        yield db, tenant, expected


async def _page(db: Database, tenant: int, args: PageArgs) -> Any:
    query = select(Policy).where(Policy.tenant_id == tenant)
    async with db.read() as session:
        page = await keyset_page(
            session, query, POLICIES, tenant, args, lambda row: (row[0].name, row[0].id)
        )
    return page, [(row[0].name, row[0].id) for _, row in page.items]


@pytest.mark.parametrize("size", [1, 3, 4, 100])
async def test_pages_forward_then_backward_cover_the_list_once(
    policies: tuple[Database, int, list[tuple[str, int]]], size: int
) -> None:
    db, tenant, expected = policies
    seen: list[tuple[str, int]] = []
    after = None
    while True:
        page, keys = await _page(db, tenant, PageArgs(first=size, after=after))
        assert page.has_previous == (after is not None)
        seen += keys
        if not page.has_next:
            break
        after = page.items[-1][0]
    assert seen == expected
    backward: list[tuple[str, int]] = []
    before = None
    while True:
        page, keys = await _page(db, tenant, PageArgs(last=size, before=before))
        assert page.has_next == (before is not None)
        backward = keys + backward
        if not page.has_previous:
            break
        before = page.items[0][0]
    assert backward == expected


async def test_a_cursor_of_another_tenant_is_refused_by_the_page(
    policies: tuple[Database, int, list[tuple[str, int]]],
) -> None:
    db, tenant, _ = policies
    foreign = encode_cursor(POLICIES.tag, tenant + 1, ("a", 1))
    with pytest.raises(BadUserInput, match="does not belong"):
        await _page(db, tenant, PageArgs(after=foreign))
    with pytest.raises(BadUserInput, match="does not belong"):
        await _page(db, tenant, PageArgs(before=encode_cursor(RUNS.tag, tenant, (1,))))
