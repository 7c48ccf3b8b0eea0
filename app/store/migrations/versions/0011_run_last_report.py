"""sync_runs.last_report_at and ix_sync_runs_running_report: runs whose worker went silent.

A run stays RUNNING until its worker finishes it; a worker that died, or a claim whose answer
was lost, left it so for ever. Each run now records when it last showed a sign of life (its
start, then each reportSyncProgress), and the reaper (app.lifecycle.timeouts) ends those silent
for SYNCSTATUS_RUN_TIMEOUT_SECONDS. Its candidates come from a partial index that holds only
running runs, ordered by that time: a few entries to read at millions of finished runs, on
SQLite and PostgreSQL alike.

Running runs are backfilled with their latest known activity (their start, or their latest
failed item's time); finished runs keep null (no table rewrite for them).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.store import online_index

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAME = "ix_sync_runs_running_report"
RUNNING_ONLY = "state = 'RUNNING'"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # IF NOT EXISTS: the index is built outside this migration's transaction (online_index), so
    # the column and backfill commit before it; an upgrade run again after a failed build finds
    # them there. (SQLite builds in the transaction and has no ADD COLUMN IF NOT EXISTS.)
    column = sa.Column("last_report_at", sa.BigInteger(), nullable=True)
    op.add_column("sync_runs", column, if_not_exists=postgres or None)
    larger = "greatest" if postgres else "max"
    op.execute(
        f"UPDATE sync_runs SET last_report_at = {larger}(started_at, coalesce("
        "(SELECT max(f.failed_at) FROM failed_items f WHERE f.run_id = sync_runs.id),"
        " started_at)) WHERE state = 'RUNNING'"
    )
    online_index.create_index(NAME, "sync_runs", "last_report_at", where=RUNNING_ONLY)


def downgrade() -> None:
    online_index.drop_index(NAME)
    # SQLite 3.35+ drops a column in place (ALTER TABLE ... DROP COLUMN), no table copy.
    op.drop_column("sync_runs", "last_report_at")
