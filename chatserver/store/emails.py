"""Planning the notifier's emails: what is due, what it mentions, cursors and digests.

The cursor that says which messages an email covered moves in the same
transaction that records the email in the outbox (`outbox.py`), so a
message is mentioned in one email at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.roles import Role
from chatserver.store import dialect, per_person
from chatserver.store.messages import before_candidate
from chatserver.store.tables import (
    applications,
    candidates,
    conversations,
    email_cursors,
    email_digests,
    jobs,
    messages,
    organisations,
    read_positions,
    staff,
)

# Any fixed 64-bit number works: it names the planner's advisory lock, which
# makes concurrent notifiers plan one at a time on PostgreSQL.
PLANNER_LOCK_ID = 0x43_48_41_54_4E_4F_54  # "CHATNOT"

# What an email is about (the `topic` column).
MESSAGES = "messages"  # unread messages in one conversation (after_seq, last_seq]
DIGEST = "digest"  # the daily digest of `local_date`
# Why a reply by email to `conversation_id` was not posted (`reason`).
REPLY_REFUSED = "reply_refused"

# Built once (see store/inbox.py's _VIEWER_POSITION).
_READ = read_positions.alias("rp")
_CURSOR = email_cursors.alias("ec")


@dataclass(frozen=True)
class Due:
    """Unread messages for one recipient in one conversation, not yet emailed."""

    recipient_kind: str
    recipient_id: str
    conversation_id: str
    after_seq: int  # the first message to mention comes after this
    last_seq: int


async def try_planner_lock(conn: AsyncConnection) -> bool:
    """True if this transaction may plan. SQLite serialises writers itself
    (and one notifier is assumed there)."""
    if not dialect.is_postgres(conn):
        return True
    query = text("SELECT pg_try_advisory_xact_lock(:id)").bindparams(id=PLANNER_LOCK_ID)
    return bool((await conn.execute(query)).scalar_one())


def _theirs(recipient_kind: str) -> tuple[ColumnElement[bool], ...]:
    """What limits the messages a recipient is emailed about to their own:
    a candidate hears nothing written before the application came to them
    (`messages.before_candidate`)."""
    return (~before_candidate(),) if recipient_kind == Role.CANDIDATE else ()


async def due_each(
    conn: AsyncConnection, recipient_kind: str, cutoff: datetime, since: datetime
) -> list[Due]:
    """Recipients whose setting is "each" and whose oldest unread, un-emailed
    message from the other side was sent at or before `cutoff`.

    Candidates receive staff messages; every staff member of the
    organisation receives candidate messages. Only conversations active
    since `since` are scanned, which bounds the work per poll.
    """
    if recipient_kind == Role.CANDIDATE:
        person = candidates
        recipient_id = applications.c.candidate_id
        sender_kind = Role.STAFF
        joined = conversations.join(
            applications, applications.c.id == conversations.c.application_id
        ).join(candidates, candidates.c.id == applications.c.candidate_id)
    else:
        person = staff
        recipient_id = staff.c.id
        sender_kind = Role.CANDIDATE
        # Staff the host removed get nothing more (DELETE /api/v1/staff).
        joined = conversations.join(
            staff, and_(staff.c.org_id == conversations.c.org_id, staff.c.removed_at.is_(None))
        )
    read, cursor = _READ, _CURSOR
    joined = (
        joined.join(messages, messages.c.conversation_id == conversations.c.id)
        .outerjoin(read, per_person.row_of(read, recipient_kind, recipient_id))
        .outerjoin(cursor, per_person.row_of(cursor, recipient_kind, recipient_id))
    )
    # The later of read position and cursor.
    after = dialect.greatest(conn, func.coalesce(read.c.seq, 0), func.coalesce(cursor.c.seq, 0))
    query = (
        select(
            conversations.c.id,
            recipient_id.label("recipient_id"),
            func.min(after).label("after_seq"),
            func.max(messages.c.seq).label("last_seq"),
        )
        .select_from(joined)
        .where(
            conversations.c.last_message_at >= since,
            person.c.email_notifications == "each",
            messages.c.sender_kind == sender_kind,
            messages.c.deleted == false(),
            messages.c.seq > func.coalesce(read.c.seq, 0),
            messages.c.seq > func.coalesce(cursor.c.seq, 0),
            *_theirs(recipient_kind),
        )
        .group_by(conversations.c.id, recipient_id)
        .having(func.min(messages.c.created_at) <= cutoff)
        .order_by(conversations.c.id, recipient_id)
    )
    return [
        Due(
            recipient_kind,
            str(row.recipient_id),
            str(row.id),
            int(row.after_seq),
            int(row.last_seq),
        )
        for row in await conn.execute(query)
    ]


@dataclass(frozen=True)
class Mentioned:
    """What a messages email can say, read when it is sent: how many of the
    other side's messages in its range are still there and unread, the
    latest few of them (oldest first), and who sent them."""

    count: int
    latest: list[RowMapping]
    sender_names: list[str]


async def mentioned(
    conn: AsyncConnection,
    conversation_id: str,
    sender_kind: str,
    after_seq: int,
    last_seq: int,
    latest: int,
) -> Mentioned:
    """Messages from `sender_kind` with after_seq < seq <= last_seq that are
    not deleted for everyone."""
    where = (
        messages.c.conversation_id == conversation_id,
        messages.c.sender_kind == sender_kind,
        messages.c.deleted == false(),
        messages.c.seq > after_seq,
        messages.c.seq <= last_seq,
        *_theirs(Role(sender_kind).other),
    )
    count = (await conn.execute(select(func.count()).where(*where))).scalar_one()
    rows = await conn.execute(
        select(messages).where(*where).order_by(messages.c.seq.desc()).limit(latest)
    )
    names = await conn.execute(
        select(messages.c.sender_name, func.min(messages.c.seq).label("first"))
        .where(*where)
        .group_by(messages.c.sender_name)
        .order_by("first")
        .limit(3)
    )
    return Mentioned(
        count=int(count),
        latest=list(reversed(list(rows.mappings()))),
        sender_names=[str(row.sender_name) for row in names],
    )


async def advance_cursor(conn: AsyncConnection, due: Due, now: datetime) -> None:
    await move_cursors(
        conn, due.recipient_kind, due.recipient_id, [(due.conversation_id, due.last_seq)], now
    )


async def move_cursors(
    conn: AsyncConnection,
    kind: str,
    person_id: str,
    covered: Sequence[tuple[str, int]],
    now: datetime,
) -> None:
    """Emails to this person have covered each (conversation, seq) up to
    that seq (a cursor never moves back); one statement for all of them,
    as a digest covers up to 50 conversations."""
    if not covered:
        return
    stmt = dialect.insert(conn)(email_cursors).values(
        [
            {
                "recipient_kind": kind,
                "recipient_id": person_id,
                "conversation_id": conversation_id,
                "seq": seq,
                "updated_at": now,
            }
            for conversation_id, seq in covered
        ]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["recipient_kind", "recipient_id", "conversation_id"],
        set_={"seq": stmt.excluded.seq, "updated_at": stmt.excluded.updated_at},
        where=email_cursors.c.seq < stmt.excluded.seq,
    )
    await conn.execute(stmt)


async def emailed_through(
    conn: AsyncConnection, conversation_id: str, kind: str, person_id: str
) -> int:
    """The last seq of the conversation that emails to this person have
    covered (their email cursor); 0 when none has."""
    query = select(email_cursors.c.seq).where(
        email_cursors.c.conversation_id == conversation_id,
        email_cursors.c.recipient_kind == kind,
        email_cursors.c.recipient_id == person_id,
    )
    return int((await conn.execute(query)).scalar_one_or_none() or 0)


# -- digests ---------------------------------------------------------------------


async def daily_readers(conn: AsyncConnection, not_on: str) -> list[dict[str, Any]]:
    """Staff and candidates who chose the daily digest and have not had one
    on `not_on` (the latest local date anywhere); the caller checks each
    one's own local date and hour."""
    rows: list[dict[str, Any]] = []
    for kind, table in ((Role.STAFF, staff), (Role.CANDIDATE, candidates)):
        query = (
            select(
                table.c.id,
                table.c.name,
                table.c.email,
                table.c.timezone,
                email_digests.c.last_on,
            )
            .outerjoin(
                email_digests,
                and_(
                    email_digests.c.recipient_kind == kind,
                    email_digests.c.recipient_id == table.c.id,
                ),
            )
            .where(
                table.c.email_notifications == "daily",
                or_(email_digests.c.last_on.is_(None), email_digests.c.last_on < not_on),
                # Staff the host removed get no digest (DELETE /api/v1/staff).
                *([staff.c.removed_at.is_(None)] if table is staff else []),
            )
            .order_by(table.c.id)
        )
        rows.extend({**row, "kind": kind} for row in (await conn.execute(query)).mappings())
    return rows


async def mark_digest(conn: AsyncConnection, kind: str, person_id: str, local_date: str) -> None:
    stmt = dialect.insert(conn)(email_digests).values(
        recipient_kind=kind, recipient_id=person_id, last_on=local_date
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["recipient_kind", "recipient_id"],
            set_={"last_on": stmt.excluded.last_on},
        )
    )


async def digest_items(
    conn: AsyncConnection, kind: str, person_id: str, since: datetime, limit: int
) -> list[dict[str, Any]]:
    """Conversations with messages from the other side that this reader has
    not read: candidate, job, unread count and the latest unread body."""
    sender_kind = Role.CANDIDATE if kind == Role.STAFF else Role.STAFF
    read = _READ
    position = func.coalesce(read.c.seq, 0)
    base = (
        conversations.join(applications, applications.c.id == conversations.c.application_id)
        .join(jobs, jobs.c.id == applications.c.job_id)
        .join(candidates, candidates.c.id == applications.c.candidate_id)
        .join(organisations, organisations.c.id == conversations.c.org_id)
        .join(messages, messages.c.conversation_id == conversations.c.id)
        .outerjoin(
            read,
            and_(
                read.c.conversation_id == conversations.c.id,
                read.c.reader_kind == kind,
                read.c.reader_id == person_id,
            ),
        )
    )
    if kind == Role.STAFF:
        org = select(staff.c.org_id).where(staff.c.id == person_id).scalar_subquery()
        scope = conversations.c.org_id == org
    else:
        scope = applications.c.candidate_id == person_id
    query = (
        select(
            conversations.c.id,
            conversations.c.application_id,
            candidates.c.name.label("candidate_name"),
            jobs.c.title.label("job_title"),
            organisations.c.name.label("org_name"),
            func.count().label("unread"),
            func.max(messages.c.seq).label("last_seq"),
        )
        .select_from(base)
        .where(
            scope,
            conversations.c.last_message_at >= since,
            messages.c.sender_kind == sender_kind,
            messages.c.deleted == false(),
            messages.c.seq > position,
            *_theirs(kind),
        )
        .group_by(
            conversations.c.id,
            conversations.c.application_id,
            candidates.c.name,
            jobs.c.title,
            organisations.c.name,
        )
        .order_by(func.max(messages.c.created_at).desc(), conversations.c.id)
        .limit(limit)
    )
    items = list((await conn.execute(query)).mappings())
    if not items:
        return []
    keys = [(item["id"], item["last_seq"]) for item in items]
    bodies_query = select(messages.c.conversation_id, messages.c.body).where(
        or_(*(and_(messages.c.conversation_id == c, messages.c.seq == s) for c, s in keys))
    )
    bodies = {row.conversation_id: row.body for row in await conn.execute(bodies_query)}
    return [{**item, "last_body": bodies.get(item["id"], "")} for item in items]


async def read_position(
    conn: AsyncConnection, conversation_id: str, kind: str, person_id: str
) -> int:
    query = select(read_positions.c.seq).where(
        read_positions.c.conversation_id == conversation_id,
        read_positions.c.reader_kind == kind,
        read_positions.c.reader_id == person_id,
    )
    return int((await conn.execute(query)).scalar_one_or_none() or 0)
