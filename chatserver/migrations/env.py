"""Alembic environment: the schema comes from chatserver.store.tables."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool, text

from chatserver.store.tables import metadata

config = context.config
# Names the advisory lock that makes two `chatserver migrate` at once (a
# release step on every pod) take turns: the second waits for the first to
# commit, then finds the schema at its head and does nothing. Any fixed
# 64-bit number works; the notifier's planner holds another.
MIGRATION_LOCK_ID = 0x43_48_41_54_4D_49_47  # "CHATMIG"


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        # Batch mode lets later migrations alter tables on SQLite too.
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
