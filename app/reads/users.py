"""The Sync Status table: filtered, ordered keyset pages of users with exact totals.

On SQLite the access path of each page is chosen here, from exact counts (see user_counts):
SQLite has no statistics to tell a filter matching 80% of a million users from one matching 30.
- walk: follow the order's index (by email, or by latest sync), starting with the status or
  policy equality that selects fewer users, and check the other filters row by row; it reads
  about limit x (users in the index prefix / users matching) rows.
- filters: read the ids the status / policy / latestSyncAt filters select from a covering
  index, then those rows, and sort (all of them).
- search: read the trigram index's matches by rowid, then sort (all the matches).
The cheapest wins. Columns that must not pick an index are written `col + 0` / `col || ''`;
where SQLite would still pick a worse index, the plan names one (INDEXED BY).
PostgreSQL plans with its own statistics, so it gets the plain conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BindParameter,
    Select,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.domain import validation
from app.domain.errors import BadUserInput
from app.domain.statuses import UserStatus
from app.domain.validation import CODE_MAX
from app.domain.views import UserView, row_fields
from app.reads.pagination import (
    Keyset,
    Page,
    PageArgs,
    check_window,
    decode_cursor,
    page_size,
    shaped_page,
    unindexed_order,
)
from app.reads.search_cache import SearchCache
from app.reads.search_cache import kept as search_kept
from app.reads.search_cache import revision as search_revision
from app.reads.search_matches import Matches
from app.reads.user_counts import (
    counted,
    fts_matches,
    fts_phrase,
    other_tenants_users,
    structured_count,
)
from app.store import pending_requests
from app.store.engine import dialect_of
from app.store.models import FailureReason, SyncUser

STATUSES = tuple(UserStatus)
TRIGRAM = 3  # shorter searches cannot use the trigram index and fall back to a scan
EMAILS_INDEX = "ix_sync_users_emails"  # (tenant_id, email, destination_email), SQLite only
FEW = 20_000  # rows cheaper to check one by one than to count the trigram index's matches
# PostgreSQL: up to this many matches of a search, its page reads them all from pg_trgm's index
# and sorts them (~1-10 ms) instead of walking the email index, which may pass millions of
# entries before the first match.
FEW_MATCHES = 2_000
ALL = frozenset({"tenant", "status", "policy", "latest"})
# sync_requested and version as readers see them, pending bulk requests included.
COLUMNS = pending_requests.overlaid(tuple(SyncUser.__table__.c))
# A row of COLUMNS's values in UserView's field order, by position: a Row's attributes read by
# name cost ~0.4 us each, ~5-10 us of a view's ~9-14 us, ten views a page.
_VIEW_VALUES = itemgetter(*(tuple(c.key for c in COLUMNS).index(n) for n in row_fields(UserView)))


def _view(row: Any) -> UserView:
    """The UserView of a row that selects COLUMNS (every page and lookup here does)."""
    return UserView.from_row(_VIEW_VALUES(row), None, None, None)


ORDERS = {
    "EMAIL_ASC": Keyset("u.email", (SyncUser.email, SyncUser.id), False, (str, int)),
    "LATEST_SYNC_DESC": Keyset("u.latest", (SyncUser.latest_sort, SyncUser.id), True, (int, int)),
}
_KEY_OF = {
    "EMAIL_ASC": lambda row: (row.email, row.id),
    "LATEST_SYNC_DESC": lambda row: (row.latest_sort, row.id),
}


@dataclass(frozen=True, slots=True)
class UserFilter:
    email_contains: str | None = None
    latest_sync_from: int | None = None
    latest_sync_to: int | None = None
    policy_id: int | None = None
    status: str | None = None
    error_code: str | None = None  # FAILED users with this errorCode on their last finished run

    @property
    def ranged(self) -> bool:
        return self.latest_sync_from is not None or self.latest_sync_to is not None

    @property
    def term(self) -> str | None:
        return validation.search(self.email_contains)

    @property
    def search_only(self) -> bool:
        """An email search and nothing else: its count depends on the emails alone."""
        return (
            bool(self.term)
            and self.status is None
            and self.policy_id is None
            and self.error_code is None
            and not self.ranged
        )


LANDING = UserFilter()  # no filter: the table as the page opens


@dataclass(frozen=True, slots=True)
class UserPage:
    page: Page[UserView]
    total: int | None  # the exact count, when planning the page needed it


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# A filter's values, bound at run time (filter_params): the statements of each shape of filter
# are built once (conditions_of, the page's in pagination.shaped_page). Building a filtered
# page's SQLAlchemy expressions anew took about a third of its time (all filters combined at
# 1M users).
TENANT: BindParameter[int] = bindparam("tenant")
STATUS: BindParameter[str] = bindparam("status")
POLICY: BindParameter[int] = bindparam("policy")
LATEST_FROM: BindParameter[int] = bindparam("latest_from")
LATEST_TO: BindParameter[int] = bindparam("latest_to")
ERROR_CODE: BindParameter[str] = bindparam("error_code")
PATTERN: BindParameter[str] = bindparam("pattern")
PHRASE: BindParameter[str] = bindparam("phrase")


def filter_params(tenant_id: int, filt: UserFilter) -> dict[str, Any]:
    """The values of conditions_of()'s bind parameters."""
    term = filt.term
    return {
        "tenant": tenant_id,
        "status": filt.status,
        "policy": filt.policy_id,
        "latest_from": filt.latest_sync_from,
        "latest_to": filt.latest_sync_to,
        "error_code": filt.error_code,
        "pattern": _like_pattern(term) if term else None,
        "phrase": fts_phrase(term) if term else None,
    }


def _like() -> ColumnElement[bool]:
    # Emails are stored lower-case. SQLite checks both inside its covering indexes.
    return or_(
        SyncUser.email.like(PATTERN, escape="\\"),
        SyncUser.destination_email.like(PATTERN, escape="\\"),
    )


# PostgreSQL: both emails in one text, as its one pg_trgm index holds them (migration 0012).
EMAILS_TEXT = SyncUser.email.concat(literal_column("E'\\n'")).concat(SyncUser.destination_email)


def _postgres_like(term: str) -> ColumnElement[bool]:
    """Either email contains the term: one scan of the trigram index. No email holds
    whitespace, so a term with a newline (the separator) matches nobody."""
    if "\n" in term:
        return false()
    return EMAILS_TEXT.like(PATTERN, escape="\\")


def _fts() -> ColumnElement[bool]:
    matches: Select[Any] = (
        select(literal_column("rowid"))
        .select_from(text("sync_users_search"))
        .where(text("sync_users_search MATCH :phrase").bindparams(PHRASE))
    )
    return SyncUser.id.in_(matches)


def _trigram(dialect: str, term: str) -> bool:
    return dialect == "sqlite" and len(term) >= TRIGRAM


def _shape(filt: UserFilter) -> tuple[Any, ...]:
    """What of the filter decides its conditions' form, not their values."""
    term = filt.term
    return (
        filt.error_code is not None,
        filt.status is not None,
        filt.status in (None, UserStatus.FAILED),
        filt.policy_id is not None,
        filt.latest_sync_from is not None,
        filt.latest_sync_to is not None,
        # Empty (no search), short (no trigram index), with a newline (no match), or other.
        None if not term else (len(term) >= TRIGRAM, "\n" in term),
    )


def conditions(
    tenant_id: int,
    dialect: str,
    filt: UserFilter,
    indexed: frozenset[str] = ALL,
    search: str = "auto",
    ids: bool = False,
) -> list[ColumnElement[bool]]:
    """conditions_of() with the filter's values in place."""
    params = filter_params(tenant_id, filt)
    return [
        c if isinstance(c, _FALSE) else c.params(params)  # false() has nothing bound, no copy
        for c in conditions_of(dialect, filt, indexed, search, ids)
    ]


_FALSE = type(false())


_CONDITIONS: dict[tuple[Any, ...], list[ColumnElement[bool]]] = {}
MAX_SHAPES = 1024


def conditions_of(
    dialect: str,
    filt: UserFilter,
    indexed: frozenset[str] = ALL,
    search: str = "auto",
    ids: bool = False,
) -> list[ColumnElement[bool]]:
    """The filter as SQL, its values bound at run time (filter_params); columns not in
    `indexed` are kept from using an index (SQLite). search: "fts" (trigram index), "like", or
    "auto" (fts when it can). ids: select the users the other filters match by id in a
    subquery that SQLite answers from an index alone, and read only those rows."""
    key = (dialect, _shape(filt), indexed, search, ids)
    found = _CONDITIONS.get(key)
    if found is None:
        found = _conditions(dialect, filt, indexed, search, ids)
        if len(_CONDITIONS) < MAX_SHAPES:
            _CONDITIONS[key] = found
    return found


def _conditions(
    dialect: str, filt: UserFilter, indexed: frozenset[str], search: str, ids: bool
) -> list[ColumnElement[bool]]:
    def col(name: str, column: Any, numeric: bool = True) -> Any:
        if name in indexed:
            return column
        return column + 0 if numeric else column.concat("")

    where: list[ColumnElement[bool]] = [col("tenant", SyncUser.tenant_id) == TENANT]
    if filt.error_code is not None:
        # Only FAILED users have an error_code: the status is implied, or contradicted.
        where.append(SyncUser.error_code == ERROR_CODE)
        # Any other status matches nothing (false() would drop it all).
        if filt.status not in (None, UserStatus.FAILED):
            where.append(SyncUser.error_code.is_(None))
    elif filt.status is not None:
        where.append(col("status", SyncUser.status, numeric=False) == STATUS)
    if filt.policy_id is not None:
        where.append(col("policy", SyncUser.policy_id) == POLICY)
    if filt.ranged:
        latest = col("latest", SyncUser.latest_sort)
        where.append(latest > 0)  # never-synced users are excluded
        if filt.latest_sync_from is not None:
            where.append(latest >= LATEST_FROM)
        if filt.latest_sync_to is not None:
            where.append(latest <= LATEST_TO)
    if ids:
        where = [SyncUser.id.in_(select(SyncUser.id).where(*where).correlate(None))]
    term = filt.term
    if term:
        use_fts = search == "fts" or (search == "auto" and _trigram(dialect, term))
        if use_fts:
            where.append(_fts())
        else:
            where.append(_like() if dialect == "sqlite" else _postgres_like(term))
    return where


def check_filter(filt: UserFilter) -> None:
    if filt.status is not None and filt.status not in STATUSES:
        raise BadUserInput(f"Unknown status {filt.status!r}.")
    if (
        filt.latest_sync_from is not None
        and filt.latest_sync_to is not None
        and filt.latest_sync_from > filt.latest_sync_to
    ):
        raise BadUserInput("latestSyncFrom is after latestSyncTo.")
    if filt.error_code is not None and not 0 < len(filt.error_code) <= CODE_MAX:
        raise BadUserInput(f"errorCode must be 1 to {CODE_MAX} characters.")


async def plan_for_values(session: AsyncSession, filt: UserFilter) -> None:
    """PostgreSQL: plan a search's statements for their values, in this transaction only.
    asyncpg prepares every statement and after five runs PostgreSQL may keep a generic plan;
    blind to the term (38 matches or 62,665), for all filters combined at 1M users it ANDs the
    term's whole trigram bitmap and sorts: 34 ms for the page where the custom plan takes 1-3.
    Not for every statement: planning each write statement cost ~0.5 ms a run lifecycle step."""
    if filt.term and dialect_of(session) != "sqlite":
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


@dataclass(frozen=True, slots=True)
class Access:
    """How to read rows on SQLite (see conditions)."""

    indexed: frozenset[str]
    search: str = "like"
    ids: bool = False
    index: str | None = None  # SQLite: INDEXED BY

    def select(self, query: Select[Any]) -> Select[Any]:
        if self.index is None:
            return query
        return query.with_hint(SyncUser, f"INDEXED BY {self.index}", "sqlite")


BY_TRIGRAMS = Access(frozenset(), "fts")  # rowids from the trigram index only
# The users the other filters select, from the covering policy / latest index (SQLite would
# rather walk the bare latest index once it must read rows anyway), then their rows.
BY_FILTERS = Access(ALL, "like", ids=True)
# With a status: its index holds the range, the policy and both emails, so a count is answered
# inside it and a page reads only the matching rows.
BY_STATUS = Access(
    frozenset({"tenant", "status", "latest"}), "like", index="ix_sync_users_status_latest"
)


# With a status and a policy: the same inside their own index (migration 0005), which holds only
# that status's users of that policy (all filters combined at 1M users: 6,600 entries, not 76,000).
BY_STATUS_POLICY = Access(ALL, "like", index="ix_sync_users_status_policy")


def by_filters(filt: UserFilter) -> Access:
    if filt.status is not None and filt.policy_id is not None:
        return BY_STATUS_POLICY
    return BY_STATUS if filt.status is not None else BY_FILTERS


# With an errorCode: its partial index in the page's order holds every filter column, so a
# walk checks each of the code's users inside it and reads only the matching rows; the count
# reads at most the code's users.
BY_ERROR = {
    "EMAIL_ASC": Access(frozenset({"tenant"}), "like", index="ix_sync_users_error_email"),
    "LATEST_SYNC_DESC": Access(
        frozenset({"tenant", "latest"}), "like", index="ix_sync_users_error_latest"
    ),
}


async def _error_count(session: AsyncSession, tenant_id: int, filt: UserFilter) -> int:
    if filt.status not in (None, UserStatus.FAILED):
        return 0
    if filt.policy_id is None and not filt.ranged and not filt.term:
        found = await session.scalar(
            select(FailureReason.user_count).where(
                FailureReason.tenant_id == tenant_id, FailureReason.error_code == filt.error_code
            )
        )
        return int(found or 0)
    if dialect_of(session) == "sqlite":
        return await _filter_count(session, tenant_id, filt, BY_ERROR["LATEST_SYNC_DESC"])
    return await _postgres_count(session, tenant_id, filt)


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    structured: int | None  # users matching all but emailContains, when known
    fts: int | None  # trigram matches in every tenant, when searched


async def _structured_count(session: AsyncSession, tenant_id: int, filt: UserFilter) -> int:
    """The count of the filter's structured part (status, policy, latest-sync range)."""
    return await structured_count(
        session, tenant_id, filt.status, filt.policy_id, filt.latest_sync_from, filt.latest_sync_to
    )


async def _sqlite_counts(
    session: AsyncSession,
    tenant_id: int,
    filt: UserFilter,
    term: str | None,
    search_counts: SearchCache | None,
) -> Counts:
    if term and filt.search_only:
        # fts (every tenant's matches) is kept with the tenant's total: it only weighs the
        # access paths, so another tenant's later emails can cost time, never exactness.
        return await search_kept(
            search_counts,
            session,
            tenant_id,
            term,
            lambda: _sqlite_uncached(session, tenant_id, filt, term),
        )
    return await _sqlite_uncached(session, tenant_id, filt, term)


async def _sqlite_uncached(
    session: AsyncSession, tenant_id: int, filt: UserFilter, term: str | None
) -> Counts:
    if not term or len(term) < TRIGRAM:
        structured = await _structured_count(session, tenant_id, filt)
        if not term or structured == 0:
            return Counts(structured, structured, None)
        total = await _filter_count(session, tenant_id, filt, by_filters(filt))
        return Counts(total, structured, None)
    if filt.status is None and filt.policy_id is None and not filt.ranged:
        fts_all = await fts_matches(session, term)  # in every tenant
        others = await other_tenants_users(session, tenant_id) if fts_all else 0
        if others == 0:
            return Counts(fts_all, None, fts_all)
        if others is not None and others <= fts_all:  # less the other tenants' matches
            return Counts(fts_all - await _others_matching(session, tenant_id, term), None, fts_all)
        return Counts(await _filter_count(session, tenant_id, filt, BY_TRIGRAMS), None, fts_all)
    structured = await _structured_count(session, tenant_id, filt)
    if structured == 0:
        return Counts(0, 0, None)
    # Few users selected by the other filters: check them with LIKE, no trigram lookup at all.
    fts = await fts_matches(session, term) if structured > FEW else None
    if fts == 0:
        return Counts(0, structured, 0)
    if fts is None or structured <= fts:
        total = await _filter_count(session, tenant_id, filt, by_filters(filt))
    else:  # check the fewer trigram matches against the other filters
        total = await _filter_count(session, tenant_id, filt, BY_TRIGRAMS)
    return Counts(total, structured, fts)


async def _others_matching(session: AsyncSession, tenant_id: int, term: str) -> int:
    """Users of the other tenants whose emails contain the term (ix_sync_users_emails alone)."""
    query = (
        select(func.count())
        .select_from(SyncUser)
        .where(or_(SyncUser.tenant_id < tenant_id, SyncUser.tenant_id > tenant_id), _like())
    )
    return int(await session.scalar(query, {"pattern": _like_pattern(term)}) or 0)


async def _filter_count(
    session: AsyncSession, tenant_id: int, filt: UserFilter, access: Access | None
) -> int:
    """The users the filter selects, counted as `access` says (None: as PostgreSQL plans it),
    with a statement built once per shape of filter, like the page's."""
    dialect = dialect_of(session)
    key = (dialect, access, _shape(filt))
    query = _COUNTS.get(key)
    if query is None:
        query = select(func.count()).select_from(SyncUser)
        if access is None:
            query = query.where(*conditions_of(dialect, filt))
        else:
            where = conditions_of(dialect, filt, access.indexed, access.search, access.ids)
            query = access.select(query.where(*where))
        if len(_COUNTS) < MAX_SHAPES:
            _COUNTS[key] = query
    conn = await session.connection()
    return int((await conn.execute(query, filter_params(tenant_id, filt))).scalar() or 0)


_COUNTS: dict[tuple[Any, ...], Select[Any]] = {}


async def user_count(
    session: AsyncSession,
    tenant_id: int,
    filt: UserFilter,
    search_counts: SearchCache | None = None,
) -> int:
    """The filter's exact count; an email search alone is kept in `search_counts` (the app's)."""
    check_filter(filt)
    if filt.error_code is not None:
        return await _error_count(session, tenant_id, filt)
    dialect = dialect_of(session)
    term = filt.term
    if dialect == "sqlite":
        return (await _sqlite_counts(session, tenant_id, filt, term, search_counts)).total
    if not term:
        return await _structured_count(session, tenant_id, filt)
    if filt.search_only:
        return await search_kept(
            search_counts,
            session,
            tenant_id,
            term,
            lambda: _postgres_count(session, tenant_id, filt),
        )
    return await _postgres_count(session, tenant_id, filt)


async def _postgres_count(session: AsyncSession, tenant_id: int, filt: UserFilter) -> int:
    await plan_for_values(session, filt)
    return await _filter_count(session, tenant_id, filt, None)


@dataclass(frozen=True, slots=True)
class Plan:
    access: Access
    total: int | None


async def _sqlite_plan(
    session: AsyncSession,
    tenant_id: int,
    filt: UserFilter,
    order: str,
    limit: int,
    search_counts: SearchCache | None = None,
) -> Plan:
    # The walk's index prefix: the status or policy equality that selects fewer users.
    prefix = "tenant"
    base: int | None = None  # the users under that prefix, once counted
    if filt.status is not None and filt.policy_id is not None:
        by_status = await counted(session, tenant_id, filt.status, None)
        by_policy = await counted(session, tenant_id, None, filt.policy_id)
        prefix = "status" if by_status <= by_policy else "policy"
        base = min(by_status, by_policy)
    elif filt.status is not None:
        prefix = "status"
    elif filt.policy_id is not None:
        prefix = "policy"
    walk = Access(
        frozenset({"tenant", prefix} | ({"latest"} if order != "EMAIL_ASC" else set())),
        # A search walking all users by email checks both emails inside this index.
        index=EMAILS_INDEX if prefix == "tenant" and order == "EMAIL_ASC" and filt.term else None,
    )
    term = filt.term
    if not filt.ranged and not term:
        return Plan(walk, None)
    counts = await _sqlite_counts(session, tenant_id, filt, term, search_counts)
    if counts.total == 0:
        return Plan(walk, 0)
    if base is None:
        base = await counted(
            session,
            tenant_id,
            filt.status if prefix == "status" else None,
            filt.policy_id if prefix == "policy" else None,
        )
    if order != "EMAIL_ASC" and filt.ranged and counts.structured is not None:
        base = min(base, counts.structured * 2)  # the walk seeks to the range in that index
    options = [(limit * base / counts.total, walk)]
    if filt.ranged and order == "EMAIL_ASC" and counts.structured is not None:
        options.append((counts.structured, by_filters(filt)))
    if term and counts.fts is not None:
        options.append((counts.fts, BY_TRIGRAMS))
    return Plan(min(options, key=lambda option: option[0])[1], counts.total)


def check_page(tenant_id: int, filt: UserFilter, order: str, args: PageArgs) -> None:
    """What user_page refuses (BAD_USER_INPUT), without reading a row."""
    check_filter(filt)
    check_window(ORDERS[order], tenant_id, args)


async def user_page(
    session: AsyncSession,
    tenant_id: int,
    filt: UserFilter,
    order: str,
    args: PageArgs,
    *,
    access: Access | None = None,
    search_counts: SearchCache | None = None,
    search_matches: SearchCache | None = None,
) -> UserPage:
    """A keyset page; on SQLite read as planned, or as `access` says (tests compare them).
    Planning may count the filter's users: an email search alone through `search_counts`;
    on PostgreSQL a rare one's pages in email order come from its matches in `search_matches`
    (app/reads/search_matches.py)."""
    check_filter(filt)
    keyset = ORDERS[order]
    dialect = dialect_of(session)
    if dialect == "sqlite":
        limit, _ = page_size(args)
        if access is None and filt.error_code is not None:
            plan = Plan(BY_ERROR[order], None)
        elif access is None:
            plan = await _sqlite_plan(session, tenant_id, filt, order, limit, search_counts)
        else:
            plan = Plan(access, None)
        if plan.total == 0:  # nothing to walk; still reject bad arguments
            _, forward = page_size(args)
            after = decode_cursor(args.after, keyset, tenant_id) if args.after is not None else None
            before = (
                decode_cursor(args.before, keyset, tenant_id) if args.before is not None else None
            )
            if forward:
                return UserPage(Page([], False, after is not None), 0)
            return UserPage(Page([], before is not None, False), 0)
        used: Access | None = plan.access
        total = plan.total
    else:
        await plan_for_values(session, filt)
        used, total = None, None
        if filt.search_only and search_counts is not None:
            # The exact count (the page's totalCount, cached per process and emails revision)
            # tells a rare term from a common one; the planner cannot (see keyset_page). One
            # read of the revision serves the count and a rare term's matches.
            term = filt.term
            assert term is not None  # search_only
            emails = await search_revision(session, tenant_id)
            total = await search_counts.cached(
                session, tenant_id, term, lambda: _postgres_count(session, tenant_id, filt), emails
            )
            if total <= FEW_MATCHES and order == "EMAIL_ASC" and search_matches is not None:
                matches = await search_matches.cached(
                    session, tenant_id, term, lambda: _matches(session, tenant_id, filt), emails
                )
                found = await matches.page(
                    keyset, tenant_id, args, lambda ids: users_by_ids(session, tenant_id, ids)
                )
                if found is not None:
                    return UserPage(found, len(matches.rows))

    def build() -> Select[Any]:
        if used is None:
            return select(*COLUMNS).where(and_(*conditions_of(dialect, filt)))
        where = conditions_of(dialect, filt, used.indexed, used.search, used.ids)
        return used.select(select(*COLUMNS).where(and_(*where)))

    # A search walks ix_sync_users_emails (PostgreSQL, migration 0009) checking LIKE in it; a
    # term with few matches reads them from pg_trgm's index and sorts them instead (at 10M
    # users 'maria.chen12', 370 matches, walked 5M entries: 1.3 s).
    page = await shaped_page(
        session,
        (dialect, order, used, _shape(filt)),
        build,
        filter_params(tenant_id, filt),
        keyset,
        tenant_id,
        args,
        _KEY_OF[order],
        ids_first=SyncUser.id if dialect != "sqlite" and filt.term else None,
        sort_matches=total is not None and total <= FEW_MATCHES,
    )
    items = [(cursor, _view(row)) for cursor, row in page.items]
    return UserPage(Page(items, page.has_next, page.has_previous), total)


async def _matches(session: AsyncSession, tenant_id: int, filt: UserFilter) -> Matches:
    """A search's matches in email order: read through pg_trgm's index, then sorted."""
    where = conditions(tenant_id, dialect_of(session), filt)
    query = select(SyncUser.email, SyncUser.id).where(*where)
    ordered = query.order_by(*unindexed_order(ORDERS["EMAIL_ASC"], ascending=True))
    return Matches.of((await (await session.connection()).execute(ordered)).all())


async def users_by_ids(
    session: AsyncSession, tenant_id: int, user_ids: list[int]
) -> dict[int, UserView]:
    rows = await session.execute(
        select(*COLUMNS).where(SyncUser.tenant_id == tenant_id, SyncUser.id.in_(user_ids))
    )
    return {row.id: _view(row) for row in rows}


async def plan_access(
    session: AsyncSession, tenant_id: int, filt: UserFilter, order: str, limit: int
) -> Access | None:
    """How to read the filter's users in order, `limit` at a time, on SQLite (None: as
    PostgreSQL plans it): planned once for a walk over all of them (an export, a bulk
    request)."""
    check_filter(filt)
    if dialect_of(session) != "sqlite":
        return None
    if filt.error_code is not None:
        return BY_ERROR[order]
    return (await _sqlite_plan(session, tenant_id, filt, order, limit)).access
