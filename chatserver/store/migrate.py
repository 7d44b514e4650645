"""Run alembic migrations programmatically (`chatserver migrate`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

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


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    """The schema revision this version of chatserver needs."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def is_known(revision: str) -> bool:
    """Whether this version has the migration `revision` (a newer version's
    is unknown: the database was migrated past this version)."""
    return any(script.revision == revision for script in _scripts().walk_revisions())


def newer_schema(revision: str) -> str:
    """What to say of a database migrated by a newer version: this version
    can neither serve it nor migrate it back."""
    return (
        f"its schema is at revision {revision}, which this version does not know "
        f"(it needs {head_revision()}): a newer chatserver migrated it. Run that "
        "version; to go back to this one, restore the database from before the migration."
    )


class NewerSchema(Exception):
    """The database was migrated by a newer version (`newer_schema` says it)."""


def current_revision(settings: Settings) -> str | None:
    """The database's schema revision (None before the first migration)."""
    engine = create_engine(sync_url(settings), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate to `revision`; `NewerSchema` where a newer version already
    migrated past what this one knows (alembic would only say it cannot
    locate the revision)."""
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    current = current_revision(settings)
    if current is not None and not is_known(current):
        raise NewerSchema(newer_schema(current))
    command.upgrade(alembic_config(settings), revision)
