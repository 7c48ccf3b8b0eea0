"""Schema migrations (Alembic), run by `syncstatus db upgrade` and by the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.store.engine import normalize_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # Alembic costs ~0.2 s to import: only when it runs

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database to the newest schema. Blocking: call from a thread inside a loop."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
