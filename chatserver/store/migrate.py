"""Run alembic migrations programmatically (`chatserver migrate`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from chatserver.settings import Settings
from chatserver.store import dialect

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def sync_url(settings: Settings) -> str:
    return dialect.sync_url(settings.sqlalchemy_url)


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(settings).replace("%", "%%"))
    return config


def head_revision() -> str:
    """The schema revision this version of chatserver needs."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def upgrade(settings: Settings, revision: str = "head") -> None:
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)
