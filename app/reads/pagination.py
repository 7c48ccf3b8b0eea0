"""Keyset pagination (never OFFSET): cursors are opaque encodings of the sort key, tagged with
the connection they belong to and the tenant, so a cursor from elsewhere is rejected."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import BigInteger, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.domain.errors import BadUserInput

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
MAX_CURSOR_LENGTH = 1000
MAX_BUILT = 256  # first-page statements kept (a few shapes x sizes x directions)


@dataclass(frozen=True, slots=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[tuple[str, T]]  # (cursor, item)
    has_next: bool
    has_previous: bool


@dataclass(frozen=True, slots=True)
class Keyset:
    """How one connection sorts: its cursor tag, key columns (all in one direction)."""

    tag: str
    columns: Sequence[ColumnElement[Any]]
    descending: bool
    key_types: tuple[type, ...]


def encode_cursor(tag: str, tenant_id: int, key: Sequence[Any]) -> str:
    raw = json.dumps([tag, tenant_id, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, keyset: Keyset, tenant_id: int) -> tuple[Any, ...]:
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise BadUserInput("Malformed cursor.")
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadUserInput("Malformed cursor.") from None
    if (
        not isinstance(value, list)
        or len(value) != 2 + len(keyset.key_types)
        or value[0] != keyset.tag
        or value[1] != tenant_id
        or not all(type(v) is t for v, t in zip(value[2:], keyset.key_types, strict=True))
        or not all(_storable(v, c) for v, c in zip(value[2:], keyset.columns, strict=True))
    ):
        raise BadUserInput("The cursor does not belong to this list.")
    return tuple(value[2:])


def _storable(value: Any, column: ColumnElement[Any]) -> bool:
    """A key value the database can compare with the column (a forged cursor may hold any
    JSON): integers within the column's range, text without NUL or lone surrogates."""
    if isinstance(value, int):
        bits = 63 if isinstance(column.type, BigInteger) else 31
        return -(2**bits) <= value < 2**bits
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    return True


def page_size(args: PageArgs) -> tuple[int, bool]:
    """(limit, forward). first/last: 1..100, default 10, not both."""
    if args.first is not None and args.last is not None:
        raise BadUserInput("Pass either first or last, not both.")
    size = args.last if args.last is not None else args.first
    if size is None:
        return DEFAULT_PAGE_SIZE, args.before is None or args.after is not None
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadUserInput(f"first/last must be between 1 and {MAX_PAGE_SIZE} (got {size}).")
    return size, args.last is None


@dataclass(frozen=True, slots=True)
class _Window:
    """A page request applied to a keyset: the row limit, direction, cursors and order."""

    limit: int
    forward: bool
    after: tuple[Any, ...] | None
    before: tuple[Any, ...] | None
    order: list[Any]


def _window(
    query: Select[Any], keyset: Keyset, tenant_id: int, args: PageArgs
) -> tuple[Select[Any], _Window]:
    """The query bounded by the cursors, and how to read and order its rows."""
    limit, forward = page_size(args)
    key = tuple_(*keyset.columns)
    # An empty string is a malformed cursor, not a missing one.
    after = decode_cursor(args.after, keyset, tenant_id) if args.after is not None else None
    before = decode_cursor(args.before, keyset, tenant_id) if args.before is not None else None
    if after is not None:
        query = query.where(key < tuple_(*after) if keyset.descending else key > tuple_(*after))
    if before is not None:
        query = query.where(key > tuple_(*before) if keyset.descending else key < tuple_(*before))
    order = _ordered(keyset.columns, forward != keyset.descending)
    return query, _Window(limit, forward, after, before, order)


def _ordered(columns: Sequence[Any], ascending: bool) -> list[Any]:
    return [c.asc() if ascending else c.desc() for c in columns]


def unindexed_order(keyset: Keyset, ascending: bool) -> list[Any]:
    """The keyset's order on expressions equal to its columns (same values, same collation)
    that no index offers sorted, so the planner finds the rows by the filter, then sorts."""
    same = [
        c.concat("") if c.type.python_type is str else c + 0  # type: ignore[attr-defined]
        for c in keyset.columns
    ]
    return _ordered(same, ascending)


def _page(
    rows: list[Any],
    window: _Window,
    keyset: Keyset,
    tenant_id: int,
    key_of: Callable[[Any], Sequence[Any]],
) -> Page[Any]:
    """Up to limit + 1 rows read in the window's order, as a page in display order."""
    more = len(rows) > window.limit
    rows = rows[: window.limit]
    if not window.forward:
        rows.reverse()
    items = [(encode_cursor(keyset.tag, tenant_id, key_of(row)), row) for row in rows]
    if window.forward:
        return Page(items, has_next=more, has_previous=window.after is not None)
    return Page(items, has_next=window.before is not None, has_previous=more)


async def keyset_page(
    session: AsyncSession,
    query: Select[Any],
    keyset: Keyset,
    tenant_id: int,
    args: PageArgs,
    key_of: Callable[[Any], Sequence[Any]],
    *,
    core: bool = False,
    ids_first: ColumnElement[Any] | None = None,
    sort_matches: bool = False,
) -> Page[Any]:
    """ids_first (the table's id column): select the page's ids and keys alone, then join their
    rows: where an index holds the keys and every filtered column, the walk is an index-only
    scan that reads only the page's rows (PostgreSQL checks no filter inside a plain index
    scan, only after reading the row).

    sort_matches (with ids_first): the filter is known to select few rows: read them where the
    filter is indexed and sort them, rather than walk the order's index checking the filter
    (PostgreSQL guesses how far it must walk from a selectivity it cannot know for LIKE)."""
    query, window = _window(query, keyset, tenant_id, args)
    query = query.order_by(*window.order).limit(window.limit + 1)
    if ids_first is not None:
        keys = [ids_first, *(c for c in keyset.columns if c is not ids_first)]
        inner = query.with_only_columns(*keys)
        if sort_matches:
            ascending = window.forward != keyset.descending
            inner = inner.order_by(None).order_by(*unindexed_order(keyset, ascending))
        page = inner.subquery()
        query = (
            select(*query.selected_columns)
            .join(page, ids_first == page.c[ids_first.key])  # type: ignore[attr-defined]
            .order_by(*window.order)
        )
    if core:  # plain rows on the session's connection: no ORM overhead
        rows = list((await (await session.connection()).execute(query)).all())
    else:
        rows = list((await session.execute(query)).all())
    return _page(rows, window, keyset, tenant_id, key_of)


_BUILT: dict[tuple[Hashable, int, bool], Select[Any]] = {}


async def first_page(
    session: AsyncSession,
    shape: Hashable,
    build: Callable[[], Select[Any]],
    params: dict[str, Any],
    keyset: Keyset,
    tenant_id: int,
    args: PageArgs,
    key_of: Callable[[Any], Sequence[Any]],
) -> Page[Any]:
    """keyset_page() without cursors for a query that differs between requests of the same
    `shape` only in its bound `params`: built, ordered and cache-keyed once per shape, size and
    direction. Building and keying a page's statement took ~0.2 ms of a ~1.8 ms read."""
    if args.after is not None or args.before is not None:
        raise ValueError("first_page() reads pages without cursors")
    limit, forward = page_size(args)
    ascending = forward != keyset.descending
    key = (shape, limit, ascending)
    statement = _BUILT.get(key)
    if statement is None:
        statement = build().order_by(*_ordered(keyset.columns, ascending)).limit(limit + 1)
        if len(_BUILT) < MAX_BUILT:
            _BUILT[key] = statement
    rows = list((await (await session.connection()).execute(statement, params)).all())
    return _page(rows, _Window(limit, forward, None, None, []), keyset, tenant_id, key_of)


async def keyset_pages(
    session: AsyncSession,
    query: Select[Any],
    parent: ColumnElement[Any],
    parent_ids: Sequence[int],
    keyset: Keyset,
    tenant_id: int,
    args: PageArgs,
    key_of: Callable[[Any], Sequence[Any]],
) -> dict[int, Page[Any]]:
    """keyset_page() for many parents at once (the same args for each): one query with a
    row number per parent, so a list nested under a page costs one query, not one per row.
    `query` selects plain columns, `parent` among them."""
    query, window = _window(query, keyset, tenant_id, args)
    number = func.row_number().over(partition_by=parent, order_by=window.order).label("row_number")
    ranked = query.where(parent.in_(list(parent_ids))).add_columns(number).subquery()
    rows = (
        await (await session.connection()).execute(
            select(ranked)
            .where(ranked.c.row_number <= window.limit + 1)
            .order_by(ranked.c[parent.key], ranked.c.row_number)  # type: ignore[attr-defined]
        )
    ).all()
    grouped: dict[int, list[Any]] = {parent_id: [] for parent_id in parent_ids}
    for row in rows:
        grouped[getattr(row, parent.key)].append(row)  # type: ignore[attr-defined]
    return {
        parent_id: _page(found, window, keyset, tenant_id, key_of)
        for parent_id, found in grouped.items()
    }
