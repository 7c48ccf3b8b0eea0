"""search_revisions: each tenant's "emails revision", bumped by triggers in the same transaction
as any change to the set of its users' emails (a user added or removed, an email or destination
email changed), so an email search's exact count can be cached under it and never be stale
(app/reads/search_cache.py). Status and policy changes do not touch it.

Triggers, not the writers: no path (admin, seed, a test, psql) can change emails and forget.
A tenant's first revision is random, so a database made again cannot repeat the revisions a
cache saw in the one before. SQLite: row triggers (the seed drops the insert trigger for its
bulk load and bumps every tenant after it, app/store/bulk_load.py). PostgreSQL: statement
triggers with transition tables for INSERT and DELETE (one upsert per COPY or INSERT, not per
row), a row trigger for an email UPDATE, and TRUNCATE bumps every tenant.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 22:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# 0 .. 2**62: room for bumps without overflow.
SQLITE_FIRST = "(random() & 4611686018427387903)"
POSTGRES_FIRST = "floor(random() * 4611686018427387903)::bigint"


def _sqlite_bump(tenant: str) -> str:
    return (
        f"INSERT INTO search_revisions (tenant_id, revision) VALUES ({tenant}, {SQLITE_FIRST}) "
        "ON CONFLICT (tenant_id) DO UPDATE SET revision = revision + 1;"
    )


SQLITE_TRIGGERS = (
    "CREATE TRIGGER sync_users_revision_ai AFTER INSERT ON sync_users BEGIN "
    f"{_sqlite_bump('new.tenant_id')} END",
    "CREATE TRIGGER sync_users_revision_ad AFTER DELETE ON sync_users BEGIN "
    f"{_sqlite_bump('old.tenant_id')} END",
    "CREATE TRIGGER sync_users_revision_au "
    "AFTER UPDATE OF tenant_id, email, destination_email ON sync_users "
    "WHEN old.tenant_id IS NOT new.tenant_id OR old.email IS NOT new.email "
    "OR old.destination_email IS NOT new.destination_email BEGIN "
    f"{_sqlite_bump('old.tenant_id')} {_sqlite_bump('new.tenant_id')} END",
)

POSTGRES_UPSERT = (
    "INSERT INTO search_revisions (tenant_id, revision) "
    f"SELECT t, {POSTGRES_FIRST} FROM (SELECT DISTINCT t FROM {{source}}) AS d "
    "ON CONFLICT (tenant_id) DO UPDATE SET revision = search_revisions.revision + 1"
)
POSTGRES_TRIGGERS = (
    f"""CREATE FUNCTION sync_users_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    UPDATE search_revisions SET revision = revision + 1;
  ELSIF TG_LEVEL = 'ROW' THEN
    {POSTGRES_UPSERT.format(source="unnest(ARRAY[OLD.tenant_id, NEW.tenant_id]) AS u(t)")};
  ELSE
    {POSTGRES_UPSERT.format(source="(SELECT tenant_id AS t FROM changed) AS u")};
  END IF;
  RETURN NULL;
END $$""",
    "CREATE TRIGGER sync_users_revision_ai AFTER INSERT ON sync_users "
    "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION sync_users_revision()",
    "CREATE TRIGGER sync_users_revision_ad AFTER DELETE ON sync_users "
    "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION sync_users_revision()",
    "CREATE TRIGGER sync_users_revision_au "
    "AFTER UPDATE OF tenant_id, email, destination_email ON sync_users FOR EACH ROW "
    "WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.email IS DISTINCT FROM NEW.email "
    "OR OLD.destination_email IS DISTINCT FROM NEW.destination_email) "
    "EXECUTE FUNCTION sync_users_revision()",
    "CREATE TRIGGER sync_users_revision_at AFTER TRUNCATE ON sync_users "
    "FOR EACH STATEMENT EXECUTE FUNCTION sync_users_revision()",
)
TRIGGER_NAMES = ("ai", "ad", "au", "at")


def upgrade() -> None:
    op.create_table(
        "search_revisions",
        sa.Column("tenant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_search_revisions")),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    first = SQLITE_FIRST if sqlite else POSTGRES_FIRST
    op.execute(
        f"INSERT INTO search_revisions (tenant_id, revision) SELECT id, {first} FROM tenants"
    )
    for statement in SQLITE_TRIGGERS if sqlite else POSTGRES_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in TRIGGER_NAMES:
        if sqlite:
            op.execute(f"DROP TRIGGER IF EXISTS sync_users_revision_{name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS sync_users_revision_{name} ON sync_users")
    if not sqlite:
        op.execute("DROP FUNCTION IF EXISTS sync_users_revision()")
    op.drop_table("search_revisions")
