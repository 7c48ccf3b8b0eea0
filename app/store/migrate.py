"""Schema migrations (Alembic), run by `syncstatus db upgrade` and by the embedded default."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.store.engine import normalize_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database to the newest schema. Blocking: call from a thread inside a loop."""
    command.upgrade(alembic_config(url), "head")
