"""What a page of users shows beside each user (policy, current and last finished run), read in
the page's own session: one query per kind for the whole page, and no loader round trips."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.views import UserView
from app.reads.pagination import Page
from app.reads.runs import policies_by_ids, runs_by_ids

CURRENT_RUN = "current"
LAST_FINISHED_RUN = "last"


async def with_relations(
    session: AsyncSession, tenant_id: int, page: Page[UserView], runs: frozenset[str]
) -> Page[UserView]:
    """The page with each user's policy and, as asked in `runs`, its current / last run."""
    views = [view for _, view in page.items]
    policy_ids = sorted({v.policy_id for v in views if v.policy_id is not None})
    run_ids: set[int] = set()
    for v in views:
        if CURRENT_RUN in runs and v.current_run_id is not None:
            run_ids.add(v.current_run_id)
        if LAST_FINISHED_RUN in runs and v.last_finished_run_id is not None:
            run_ids.add(v.last_finished_run_id)
    policies = await policies_by_ids(session, tenant_id, policy_ids) if policy_ids else {}
    found = await runs_by_ids(session, tenant_id, sorted(run_ids)) if run_ids else {}
    items = [
        (
            cursor,
            replace(
                view,
                policy=policies.get(view.policy_id) if view.policy_id is not None else None,
                current_run=found.get(view.current_run_id) if view.current_run_id else None,
                last_finished_run=(
                    found.get(view.last_finished_run_id) if view.last_finished_run_id else None
                ),
            ),
        )
        for cursor, view in page.items
    ]
    return Page(items, page.has_next, page.has_previous)
