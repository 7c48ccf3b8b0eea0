"""API token lifecycle (expiry, revocation, last use).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:30:00
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
