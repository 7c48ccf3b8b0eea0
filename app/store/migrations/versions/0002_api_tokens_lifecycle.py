"""API token lifecycle (expiry, revocation, last use).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


COLUMNS = ("expires_at", "revoked_at", "last_used_at")


def upgrade() -> None:
    # batch_alter_table: SQLite adds the nullable columns in place, PostgreSQL alters as usual.
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.add_column(sa.Column(column, sa.BigInteger(), nullable=True))
        # Every API process looks for recent revocations each second.
        batch_op.create_index(batch_op.f("ix_api_tokens_revoked_at"), ["revoked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_revoked_at"))
        for column in reversed(COLUMNS):
            batch_op.drop_column(column)
