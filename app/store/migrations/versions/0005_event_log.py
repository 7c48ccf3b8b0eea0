"""Event log: each tenant's events with a gap-free sequence, replayed after a broker outage.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("event_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    op.create_table(
        "event_log",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "seq", name=op.f("pk_event_log")),
    )
    with op.batch_alter_table("event_log", schema=None) as batch_op:
        batch_op.create_index("ix_event_log_at", ["at"])


def downgrade() -> None:
    op.drop_table("event_log")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("event_seq")
