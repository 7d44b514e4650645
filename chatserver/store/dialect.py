"""The one place that knows SQLite from PostgreSQL.

Both backends run the same queries; where their SQL differs (insert-or-
ignore, row locks, GREATEST, row-value IN), the store asks here instead of
reading the dialect's name itself, so a third backend or a change of one
dialect's idiom is one edit. The SQLite connection's own set-up and the
synchronous driver Alembic uses are here for the same reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, event, func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def is_postgres(conn: AsyncConnection | AsyncEngine) -> bool:
    return conn.dialect.name == "postgresql"


def is_sqlite(conn: AsyncConnection | AsyncEngine) -> bool:
    return conn.dialect.name == "sqlite"


def insert(conn: AsyncConnection) -> Any:
    """The dialect's `insert`, which has `on_conflict_do_nothing/update`."""
    return pg_insert if is_postgres(conn) else sqlite_insert


def greatest(conn: AsyncConnection, *values: ColumnElement[Any]) -> ColumnElement[Any]:
    """The larger of the values (GREATEST on PostgreSQL, the many-argument
    MAX on SQLite)."""
    return func.greatest(*values) if is_postgres(conn) else func.max(*values)


def locked(conn: AsyncConnection, query: Select[Any], **of: Any) -> Select[Any]:
    """`query` taking row locks on PostgreSQL, for a claim that other
    PostgreSQL workers skip (`skip_locked`, `store/outbox.py`) or a blob
    that a release must wait for (`store/blobs.py`); unchanged on SQLite,
    whose single process needs none."""
    return query.with_for_update(**of) if is_postgres(conn) else query


async def for_update(conn: AsyncConnection, query: Select[Any], **of: Any) -> Select[Any]:
    """`query` for a transaction that reads, decides and then writes: no
    other such transaction may read the same rows until this one ends.

    PostgreSQL: `FOR UPDATE` locks the rows read. SQLite has no row locks
    and makes a transaction a writer only at its first write, so two of
    them could both read a conversation as open and both end it; there the
    database's write lock is taken now (`BEGIN IMMEDIATE`, waiting for the
    writer that holds it), and the read then sees what that writer
    committed. A transaction that has written already holds it."""
    if is_postgres(conn):
        return query.with_for_update(**of)
    await write_lock(conn)
    return query


async def write_lock(conn: AsyncConnection) -> None:
    """SQLite: take the database's write lock now (`BEGIN IMMEDIATE`,
    waiting for the writer that holds it), until the transaction ends; it
    is one lock for every process using the file. A transaction that has
    written already holds it. PostgreSQL: nothing, its locks are rows'."""
    if is_postgres(conn):
        return
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is not None and not driver.in_transaction:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


# PostgreSQL's lock that a transaction holds until it ends, by a 64-bit id.
_ADVISORY_XACT_LOCK = text("SELECT pg_advisory_xact_lock(:id)")


async def take_turns(conn: AsyncConnection, key: str) -> None:
    """Make the transactions that name the same `key` run one at a time from
    here until each ends: for a read, decide, write whose rows do not exist
    yet, where FOR UPDATE has nothing to lock (a person's files waiting to
    be sent, `store/attachments.py`). PostgreSQL: a transaction-scoped
    advisory lock on the key's 64-bit hash; SQLite: its one write lock."""
    if not is_postgres(conn):
        await write_lock(conn)
        return
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    lock_id = int.from_bytes(digest, "big", signed=True)
    await conn.execute(_ADVISORY_XACT_LOCK, {"id": lock_id})


# Names the advisory lock that makes two `chatserver migrate` at once (a
# release step on every machine) take turns. Any fixed 64-bit number works;
# the notifier's planner holds another (`store/emails.py`).
MIGRATION_LOCK_ID = 0x43_48_41_54_4D_49_47  # "CHATMIG"


def migrations_take_turns(connection: Connection) -> None:
    """In a migration's transaction (Alembic's synchronous connection): the
    second `chatserver migrate` waits for the first to commit, then finds
    the schema at its head and does nothing. SQLite's embedded database has
    one process, which migrates before it serves."""
    if connection.dialect.name == "postgresql":
        connection.execute(_ADVISORY_XACT_LOCK, {"id": MIGRATION_LOCK_ID})


@dataclass(frozen=True)
class Lockable:
    """A hot path's query built once (at import) in both forms `for_update`
    uses, so that no call builds a statement."""

    plain: Select[Any]
    locking: Select[Any]

    @classmethod
    def of(cls, query: Select[Any], **of: Any) -> Lockable:
        return cls(query, query.with_for_update(**of))

    async def on(self, conn: AsyncConnection) -> Select[Any]:
        """What `for_update(conn, plain)` gives."""
        if is_postgres(conn):
            return self.locking
        return await for_update(conn, self.plain)


class _RollingBackConnection(sqlite3.Connection):
    """A SQLite connection that ends its transaction before it closes.

    SQLAlchemy closes a connection whose task was cancelled midway (a
    client that left while its request was in the database). If a
    statement of that connection is still open, as a read whose rows were
    not all fetched is, SQLite only marks the connection closed and keeps
    it, with its transaction and so the database's one write lock, until
    that statement is garbage collected: every other writer waits its
    30 s busy timeout meanwhile, and the server stops answering writes.
    A rollback first ends the transaction and releases the lock at once
    (SQLite ends the open reads with it)."""

    def close(self) -> None:
        # If the rollback fails, closing is all that is left to do.
        with contextlib.suppress(sqlite3.Error):
            self.rollback()
        super().close()


def sqlite_engine(url: str) -> AsyncEngine:
    """An engine for the embedded SQLite database, each connection set up
    as the store expects."""
    engine = create_async_engine(
        url, connect_args={"timeout": 30, "factory": _RollingBackConnection}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # WAL lets the page reads run beside a write; foreign keys are
        # off by default in SQLite.
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # SQLite's own lower() folds ASCII only; search must find
        # "Ó Briain" from "ó briain" as PostgreSQL does.
        dbapi_conn.create_function(
            "lower", 1, lambda s: None if s is None else s.lower(), deterministic=True
        )

    return engine


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic runs
    synchronously): psycopg 3 does both; SQLite's is pysqlite."""
    return url.replace("sqlite+aiosqlite://", "sqlite://")
