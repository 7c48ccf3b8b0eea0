"""The newest migration's revision the CLI compares a database with (without Alembic) is the head
Alembic finds in app/store/migrations: a new migration updates HEAD_REVISION too."""

from __future__ import annotations

from app.store.schema_version import HEAD_REVISION, head_revisions


def test_head_revision_is_alembics_head() -> None:
    assert head_revisions() == {HEAD_REVISION}
