"""The pages of a rare email search in email order, cut from its list of matches (PostgreSQL).

A search alone with at most users.FEW_MATCHES matches reads them from pg_trgm's index and sorts
them for every page: at 10,000,000 users 'maria.chen12' (370 matches) spent 5-8 ms a page in
the GIN scan and ~2 ms planning it. The matches' emails and ids depend on the tenant's emails
alone, like the search's count, so the list is kept the same way (a SearchCache of its own,
under the emails revision): a page is then a slice of it and a primary-key read of its rows.

The list is in the database's email order (its collation, which Python cannot reproduce), so a
cursor is found by its user's id, not by comparing emails. A cursor that is not in the list, or a
row whose email is no longer the listed one, returns None: the caller reads that page in SQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.domain.views import UserView
from app.reads.pagination import Keyset, Page, PageArgs, decode_cursor, encode_cursor, page_size

# Lists kept per app: at most FEW_MATCHES (email, id) pairs each, ~0.2 MB at 2,000 matches.
ENTRIES = 64


@dataclass(frozen=True, slots=True)
class Matches:
    """A search's (email, id) in email order, and each id's place in it."""

    rows: Sequence[tuple[str, int]]
    place: dict[int, int]

    @classmethod
    def of(cls, rows: Sequence[Any]) -> Matches:
        listed = [(email, user_id) for email, user_id in rows]
        return cls(listed, {user_id: i for i, (_, user_id) in enumerate(listed)})

    def _at(self, key: tuple[Any, ...]) -> int | None:
        i = self.place.get(key[1])
        return i if i is not None and self.rows[i][0] == key[0] else None

    async def page(
        self,
        keyset: Keyset,
        tenant_id: int,
        args: PageArgs,
        read: Callable[[list[int]], Awaitable[dict[int, UserView]]],
    ) -> Page[UserView] | None:
        """The page `args` asks for, as keyset_page() would read it; None: read it in SQL."""
        limit, forward = page_size(args)
        after = decode_cursor(args.after, keyset, tenant_id) if args.after is not None else None
        before = decode_cursor(args.before, keyset, tenant_id) if args.before is not None else None
        low, high = 0, len(self.rows)
        if after is not None:
            if (found := self._at(after)) is None:
                return None
            low = found + 1
        if before is not None:
            if (found := self._at(before)) is None:
                return None
            high = found
        window = self.rows[low:high]
        more = len(window) > limit
        chosen = window[:limit] if forward else window[-limit:]
        views = await read([user_id for _, user_id in chosen]) if chosen else {}
        items = []
        for email, user_id in chosen:
            view = views.get(user_id)
            if view is None or view.email != email:  # changed since the list was read
                return None
            items.append((encode_cursor(keyset.tag, tenant_id, (email, user_id)), view))
        if forward:
            return Page(items, has_next=more, has_previous=after is not None)
        return Page(items, has_next=before is not None, has_previous=more)
