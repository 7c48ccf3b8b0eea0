"""ix_sync_users_due gains policy_id: (tenant, due_at, policy_id).

A claim walks the tenant's due users oldest first and takes those of active policies. The due
users of an inactive policy are never claimed, so they stay the oldest, and with (tenant, due_at)
alone the walk read each of their rows to see its policy: at 1,000,000 users with 118,781 due
users of two inactive policies, 183 ms per claim, all of it holding SQLite's writer. With the
policy in the index they are passed over inside it (7.4 ms).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 21:15:00
"""

from __future__ import annotations

from app.store import online_index

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NAME = "ix_sync_users_due"


def upgrade() -> None:
    online_index.replace_index(NAME, "sync_users", "tenant_id, due_at, policy_id")


def downgrade() -> None:
    online_index.replace_index(NAME, "sync_users", "tenant_id, due_at")
