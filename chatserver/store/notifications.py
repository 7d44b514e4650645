"""Service notifications (the bell), derived instead of stored per recipient.

A person's bell has one entry per conversation they may see in which the
other side wrote: the count of that side's messages after the person's
*bell position*, the latest of their read position (reading clears the
entry), their bell mark (marking the entry read without opening it) and,
for staff, where they archived the conversation: archiving says "done with
this", so the bell stops counting what came before, as the Unread filter
does, and a reply (which brings the conversation back, `store/archiving.py`)
counts again. So whatever the bell counts is in the Unread filter.
Sending a message therefore writes nothing for the bell, whatever the size
of the organisation (issue 10): the cost is paid when a person opens the
bell, by one grouped query over their conversations.

Who may see what: a staff member every conversation of their organisation,
a candidate the conversations of their applications, as the old rows were
addressed. What counts is THE unread rule of `store/unread.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import dialect, per_person
from chatserver.store.tables import (
    applications,
    archives,
    bell_marks,
    candidates,
    conversations,
    jobs,
    messages,
    read_positions,
)
from chatserver.store.unread import counts_as_unread

# The bell lists the conversations with the newest messages only.
LIST_LIMIT = 50


@dataclass(frozen=True)
class Scope:
    """Whose bell: the person, and the organisation of a staff member
    (None for a candidate, whose conversations are those of the
    applications whose links they opened in this session)."""

    kind: str
    person_id: str
    org_id: str | None
    application_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    """One conversation's line in a bell."""

    conversation_id: str
    job_title: str
    candidate_name: str
    unread: int  # the other side's messages after the bell position
    last_seq: int  # the newest message of the other side
    last_at: datetime
    last_message_id: str
    last_sender_name: str


def _in_scope(scope: Scope) -> ColumnElement[bool]:
    if scope.org_id is not None:
        return conversations.c.org_id == scope.org_id
    return and_(
        applications.c.candidate_id == scope.person_id,
        applications.c.id.in_(scope.application_ids),
    )


def _position(conn: AsyncConnection, scope: Scope) -> ColumnElement[int]:
    """The person's bell position in the current `conversations` row."""
    positions: list[ColumnElement[int]] = [
        per_person.seq_of(read_positions, scope.kind, scope.person_id),
        per_person.seq_of(bell_marks, scope.kind, scope.person_id),
    ]
    if scope.org_id is not None:
        positions.append(_archived_at(scope.person_id))
    return dialect.greatest(conn, *(func.coalesce(p, 0) for p in positions))


def _archived_at(staff_id: str) -> ColumnElement[int]:
    """The seq at which this staff member archived the current row (None:
    not archived)."""
    return (
        select(archives.c.seq)
        .where(archives.c.conversation_id == conversations.c.id, archives.c.staff_id == staff_id)
        .correlate_except(archives)
        .scalar_subquery()
    )


def _unread(conn: AsyncConnection, scope: Scope) -> ColumnElement[int]:
    return (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.conversation_id == conversations.c.id,
            counts_as_unread(scope.kind, literal(scope.person_id), _position(conn, scope)),
        )
        .correlate_except(messages)
        .scalar_subquery()
    )


def _newest_of_other_side(scope: Scope) -> ColumnElement[int]:
    return (
        select(func.max(messages.c.seq))
        .where(
            messages.c.conversation_id == conversations.c.id,
            counts_as_unread(scope.kind, literal(scope.person_id), literal(0)),
        )
        .correlate_except(messages)
        .scalar_subquery()
    )


async def entries(conn: AsyncConnection, scope: Scope) -> list[Entry]:
    """The bell's lines, newest first, at most `LIST_LIMIT`."""
    newest = _newest_of_other_side(scope).label("newest")
    listed = (
        select(
            conversations.c.id,
            jobs.c.title,
            candidates.c.name,
            newest,
            _unread(conn, scope).label("unread"),
        )
        .select_from(
            conversations.join(applications, applications.c.id == conversations.c.application_id)
            .join(jobs, jobs.c.id == applications.c.job_id)
            .join(candidates, candidates.c.id == applications.c.candidate_id)
        )
        .where(_in_scope(scope), conversations.c.last_seq > 0)
        .subquery()
    )
    query = (
        select(
            listed.c.id,
            listed.c.title,
            listed.c.name,
            listed.c.unread,
            messages.c.seq,
            messages.c.created_at,
            messages.c.id.label("message_id"),
            messages.c.sender_name,
        )
        .select_from(
            listed.join(
                messages,
                and_(messages.c.conversation_id == listed.c.id, messages.c.seq == listed.c.newest),
            )
        )
        .order_by(messages.c.created_at.desc(), listed.c.id)
        .limit(LIST_LIMIT)
    )
    return [
        Entry(
            conversation_id=r.id,
            job_title=r.title,
            candidate_name=r.name,
            unread=int(r.unread),
            last_seq=int(r.seq),
            last_at=r.created_at,
            last_message_id=r.message_id,
            last_sender_name=r.sender_name,
        )
        for r in await conn.execute(query)
    ]


async def unread_count(conn: AsyncConnection, scope: Scope) -> int:
    """How many conversations have a bell entry with something new."""
    query = (
        select(func.count())
        .select_from(
            conversations.join(applications, applications.c.id == conversations.c.application_id)
        )
        .where(_in_scope(scope), conversations.c.last_seq > 0, _unread(conn, scope) > 0)
    )
    return int((await conn.execute(query)).scalar_one())


async def mark(
    conn: AsyncConnection, scope: Scope, conversation_ids: Sequence[str] | None = None
) -> None:
    """Mark the bell entries of these conversations (None: all of the
    person's) read up to each conversation's newest message. Marks only
    move forward; read positions, and so read receipts, stay as they are."""
    query = select(
        literal(scope.kind).label("person_kind"),
        literal(scope.person_id).label("person_id"),
        conversations.c.id.label("conversation_id"),
        conversations.c.last_seq.label("seq"),
    ).select_from(
        conversations.join(applications, applications.c.id == conversations.c.application_id)
    )
    query = query.where(_in_scope(scope), conversations.c.last_seq > 0)
    if conversation_ids is not None:
        query = query.where(conversations.c.id.in_(list(conversation_ids)))
    insert = dialect.insert(conn)
    stmt = insert(bell_marks).from_select(
        ["person_kind", "person_id", "conversation_id", "seq"], query
    )
    # (The SELECT always has a WHERE, which SQLite's parser needs before
    # an ON CONFLICT clause of INSERT … SELECT.)
    stmt = stmt.on_conflict_do_update(
        index_elements=["person_kind", "person_id", "conversation_id"],
        set_={"seq": stmt.excluded.seq},
        where=bell_marks.c.seq < stmt.excluded.seq,
    )
    await conn.execute(stmt)
