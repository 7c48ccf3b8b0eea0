"""sync_requests: requestSyncs' pending requests, one narrow row per requested user.

A bulk request used to UPDATE every requested user's row (sync_requested, due_at, version):
due_at moved each user in ix_sync_users_due on SQLite, and on PostgreSQL every row version went
into all twelve indexes of sync_users (two of them trigram GIN), 250-450 us a user. It now
inserts (user_id, tenant_id, requested_at, bumps) here; readers overlay it and writers fold it
into the user's row (app.store.pending_requests).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_requests",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("bumps", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_sync_requests")),
    )
    op.create_index(
        "ix_sync_requests_due", "sync_requests", ["tenant_id", "requested_at", "user_id"]
    )


def downgrade() -> None:
    # Fold what is pending into the users' rows first: nothing requested is lost.
    op.execute(
        "UPDATE sync_users SET sync_requested = true,"
        " due_at = (SELECT requested_at FROM sync_requests r WHERE r.user_id = sync_users.id),"
        " version = version + (SELECT bumps FROM sync_requests r WHERE r.user_id = sync_users.id)"
        " WHERE id IN (SELECT user_id FROM sync_requests)"
    )
    op.drop_index("ix_sync_requests_due", table_name="sync_requests")
    op.drop_table("sync_requests")
