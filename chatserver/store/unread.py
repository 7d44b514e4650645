"""THE unread rule as SQL: which messages are news for a reader, and the
per-conversation counts built from it (the inbox, the bell, the badge and
"mark as unread" all ask here, so they never disagree)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, literal, select

from chatserver.roles import Role
from chatserver.store import per_person
from chatserver.store.messages import hidden_by
from chatserver.store.tables import conversations, messages, read_positions


def other_side(kind: str) -> Role:
    """Whose messages are news for a reader: a colleague's message to the
    candidate is not news for another staff member, so staff count the
    candidate's messages and the candidate counts staff messages (system
    messages are nobody's news)."""
    return Role(kind).other


def counts_as_unread(
    kind: str, reader: ColumnElement[str], position: ColumnElement[Any]
) -> ColumnElement[bool]:
    """THE unread rule, for the current `messages` row: a message of the
    other side after the reader's position (None: nothing read yet) that is
    neither deleted for everyone nor deleted by the reader for themselves."""
    return and_(
        messages.c.seq > func.coalesce(position, 0),
        messages.c.sender_kind == other_side(kind),
        messages.c.deleted == false(),
        ~hidden_by(kind, reader),
    )


def unread_count(kind: str, reader: ColumnElement[str]) -> ColumnElement[int]:
    """The unread count of the current `conversations` row for `reader` (a
    literal, or a column of an enclosing query such as the inbox feed's
    `staff.id`).

    A scalar subquery per row: the conversation's unread messages are one
    index range (conversation_id, seq > position). Correlation is explicit
    at both levels: left to itself, the position subquery nested in the
    count correlated to nothing and became `FROM read_positions,
    conversations` (issue 8: one read hid every badge on SQLite, two made
    the listing a 500 on PostgreSQL).
    """
    position = per_person.seq_of(read_positions, kind, reader)
    return (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.conversation_id == conversations.c.id,
            counts_as_unread(kind, reader, position),
        )
        .correlate_except(messages)
        .scalar_subquery()
    )


def anything_unread(kind: str, reader: ColumnElement[str], position: Any) -> ColumnElement[bool]:
    """Whether the current `conversations` row has anything unread for the
    reader whose position (None: nothing read) is the enclosing query's
    `position`: no message after it at all is decided without a subquery,
    and otherwise the first unread message ends the search. What sorting
    and filtering by unread need for every conversation of an organisation;
    the count itself is taken for the page's rows only."""
    first_unread = (
        select(literal(1))
        .select_from(messages)
        .where(
            messages.c.conversation_id == conversations.c.id,
            counts_as_unread(kind, reader, position),
        )
        .limit(1)
        .correlate_except(messages)
        .scalar_subquery()
    )
    return and_(conversations.c.last_seq > func.coalesce(position, 0), first_unread.is_not(None))
