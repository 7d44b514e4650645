"""The one place that knows SQLite from PostgreSQL.

Both backends run the same queries; where their SQL differs (insert-or-
ignore, row locks, GREATEST, row-value IN), the store asks here instead of
reading the dialect's name itself, so a third backend or a change of one
dialect's idiom is one edit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


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
    """`query` taking row locks on PostgreSQL; SQLite serialises writers
    itself, so there it is unchanged."""
    return query.with_for_update(**of) if is_postgres(conn) else query
