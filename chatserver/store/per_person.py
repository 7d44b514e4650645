"""The tables with one row per person per conversation (read positions,
bell marks, email cursors), and the one way to pick a person's row of the
current `conversations` row of an enclosing query.

Each is keyed by `conversation_id` and a `<who>_kind`, `<who>_id` pair
(reader, person, recipient). The pair is found from the table's key, so an
alias of the table (a query joining two of them) works too.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause, ScalarSelect, and_, select

from chatserver.store.tables import conversations


def row_of(table: FromClause, kind: str, person: str | ColumnElement[str]) -> ColumnElement[bool]:
    """`table`'s row for this person in the current `conversations` row."""
    key = [column for column in table.primary_key if column.name != "conversation_id"]
    kind_column = next(column for column in key if column.name.endswith("_kind"))
    id_column = next(column for column in key if column.name.endswith("_id"))
    return and_(
        table.c.conversation_id == conversations.c.id,
        kind_column == kind,
        id_column == person,
    )


def seq_of(table: FromClause, kind: str, person: str | ColumnElement[str]) -> ScalarSelect[Any]:
    """That row's `seq` as a scalar subquery (None: no row yet).

    Correlated to everything but `table` explicitly: nested in another
    subquery and left to itself, it correlated to nothing and became `FROM
    read_positions, conversations` (issue 8)."""
    return (
        select(table.c.seq)
        .where(row_of(table, kind, person))
        .correlate_except(table)
        .scalar_subquery()
    )
