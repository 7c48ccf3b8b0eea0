"""Failure triage: failure reasons, trends, error-code filter.

sync_users.error_code (the errorCode of a FAILED user's most recent finished run) with two
partial indexes for the errorCode filter in each order; the failure_reasons and trend_buckets
counters. Existing data is backfilled from the users, their runs and the change buckets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

HOUR = 3_600_000_000  # microseconds
# A FAILED user always has a failed run with a code; this keeps the counts adding up if not.
UNKNOWN_CODE = "ERR_UNKNOWN"
FAILED_ONLY = sa.text("error_code IS NOT NULL")
INDEXES = {
    "ix_sync_users_error_email": [
        "tenant_id",
        "error_code",
        "email",
        "id",
        "destination_email",
        "policy_id",
        "latest_sort",
    ],
    "ix_sync_users_error_latest": [
        "tenant_id",
        "error_code",
        "latest_sort",
        "id",
        "policy_id",
        "email",
        "destination_email",
    ],
}

BACKFILL_USERS = f"""
UPDATE sync_users SET error_code = coalesce(
    (SELECT r.error_code FROM sync_runs r WHERE r.id = sync_users.last_finished_run_id),
    '{UNKNOWN_CODE}')
WHERE status = 'FAILED'
"""
# Users per code, with the message and time of the most recent failed run with that code.
BACKFILL_REASONS = """
INSERT INTO failure_reasons (tenant_id, error_code, user_count, sample_message, last_seen_at)
SELECT c.tenant_id, c.error_code, c.users, coalesce(l.error_message, ''),
       coalesce(l.finished_at, 0)
FROM (SELECT tenant_id, error_code, count(*) AS users FROM sync_users
      WHERE error_code IS NOT NULL GROUP BY tenant_id, error_code) AS c
LEFT JOIN (SELECT tenant_id, error_code, error_message, finished_at,
                  row_number() OVER (PARTITION BY tenant_id, error_code
                                     ORDER BY finished_at DESC, id DESC) AS n
           FROM sync_runs WHERE state = 'FAILED' AND error_code IS NOT NULL) AS l
  ON l.tenant_id = c.tenant_id AND l.error_code = c.error_code AND l.n = 1
"""
BACKFILL_TRENDS = f"""
INSERT INTO trend_buckets (tenant_id, hour, changes, runs_started, runs_succeeded,
                           runs_completed_with_warning, runs_failed)
SELECT tenant_id, hour, sum(changes), sum(started), sum(succeeded), sum(warned), sum(failed)
FROM (
  SELECT tenant_id, started_at / {HOUR} AS hour, 0 AS changes, count(*) AS started,
         0 AS succeeded, 0 AS warned, 0 AS failed
  FROM sync_runs GROUP BY tenant_id, started_at / {HOUR}
  UNION ALL
  SELECT tenant_id, finished_at / {HOUR}, 0, 0,
         sum(CASE WHEN state = 'SUCCEEDED' THEN 1 ELSE 0 END),
         sum(CASE WHEN state = 'COMPLETED_WITH_WARNING' THEN 1 ELSE 0 END),
         sum(CASE WHEN state = 'FAILED' THEN 1 ELSE 0 END)
  FROM sync_runs WHERE finished_at IS NOT NULL GROUP BY tenant_id, finished_at / {HOUR}
  UNION ALL
  SELECT tenant_id, minute / 60, sum(changes), 0, 0, 0, 0
  FROM change_buckets GROUP BY tenant_id, minute / 60
) AS parts
GROUP BY tenant_id, hour
"""


def upgrade() -> None:
    op.add_column("sync_users", sa.Column("error_code", sa.String(length=100), nullable=True))
    op.create_table(
        "failure_reasons",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=100), nullable=False),
        sa.Column("user_count", sa.BigInteger(), nullable=False),
        sa.Column("sample_message", sa.Text(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "error_code", name=op.f("pk_failure_reasons")),
    )
    op.create_table(
        "trend_buckets",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.Column("runs_started", sa.BigInteger(), nullable=False),
        sa.Column("runs_succeeded", sa.BigInteger(), nullable=False),
        sa.Column("runs_completed_with_warning", sa.BigInteger(), nullable=False),
        sa.Column("runs_failed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "hour", name=op.f("pk_trend_buckets")),
    )
    op.execute(BACKFILL_USERS)
    for name, columns in INDEXES.items():
        op.create_index(
            name, "sync_users", columns, sqlite_where=FAILED_ONLY, postgresql_where=FAILED_ONLY
        )
    op.execute(BACKFILL_REASONS)
    op.execute(BACKFILL_TRENDS)


def downgrade() -> None:
    op.drop_table("trend_buckets")
    op.drop_table("failure_reasons")
    for name in INDEXES:
        op.drop_index(name, table_name="sync_users")
    # Plain ALTER TABLE on SQLite too (3.35+): a batch copy of sync_users would drop the email
    # search triggers of migration 0001.
    op.execute("ALTER TABLE sync_users DROP COLUMN error_code")
