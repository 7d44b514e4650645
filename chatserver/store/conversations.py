"""Applications and their conversations: context for policy, the inbox
listing, read positions and archives."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store.people import upsert
from chatserver.store.tables import (
    applications,
    archives,
    candidates,
    conversations,
    jobs,
    messages,
    organisations,
    read_positions,
)

CONTEXT_COLUMNS = (
    conversations.c.id,
    conversations.c.application_id,
    conversations.c.org_id,
    conversations.c.state,
    conversations.c.last_seq,
    conversations.c.last_message_at,
    conversations.c.has_staff_message,
    conversations.c.created_at,
    applications.c.status,
    applications.c.applied_at,
    applications.c.job_id,
    applications.c.candidate_id,
    jobs.c.title.label("job_title"),
    candidates.c.name.label("candidate_name"),
    candidates.c.email.label("candidate_email"),
    organisations.c.name.label("org_name"),
)


def _context_query() -> Select[Any]:
    return (
        select(*CONTEXT_COLUMNS)
        .join(applications, applications.c.id == conversations.c.application_id)
        .join(jobs, jobs.c.id == applications.c.job_id)
        .join(candidates, candidates.c.id == applications.c.candidate_id)
        .join(organisations, organisations.c.id == conversations.c.org_id)
    )


def new_conversation_id() -> str:
    return secrets.token_hex(8)


async def upsert_application(
    conn: AsyncConnection,
    application_id: str,
    org_id: str,
    job_id: str,
    candidate_id: str,
    status: str,
    applied_at: datetime,
    now: datetime,
) -> tuple[str | None, str | None, str]:
    """Insert or update an application and make sure it has its conversation.

    Returns the previous status and candidate (None when the application is
    new) and the conversation id. A new candidate restarts
    `candidate_since`, which revokes every candidate link signed before.
    """
    previous = (
        await conn.execute(
            select(applications.c.status, applications.c.candidate_id)
            .where(applications.c.id == application_id)
            .with_for_update()
        )
    ).first()
    values = {
        "id": application_id,
        "org_id": org_id,
        "job_id": job_id,
        "candidate_id": candidate_id,
        "status": status,
        "applied_at": applied_at,
        "candidate_since": now,
    }
    keys = ["job_id", "candidate_id", "status", "applied_at"]
    if previous is not None and previous.candidate_id != candidate_id:
        keys.append("candidate_since")
    await upsert(conn, applications, values, keys)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(
        insert(conversations)
        .values(
            id=new_conversation_id(),
            application_id=application_id,
            org_id=org_id,
            state="open",
            last_seq=0,
            has_staff_message=False,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["application_id"])
    )
    conversation_id = (
        await conn.execute(
            select(conversations.c.id).where(conversations.c.application_id == application_id)
        )
    ).scalar_one()
    if previous is None:
        return None, None, str(conversation_id)
    return str(previous.status), str(previous.candidate_id), str(conversation_id)


async def application_link_binding(
    conn: AsyncConnection, application_id: str
) -> tuple[str, datetime | None] | None:
    """The application's candidate and since when they hold it, or None."""
    row = (
        await conn.execute(
            select(applications.c.candidate_id, applications.c.candidate_since).where(
                applications.c.id == application_id
            )
        )
    ).first()
    return None if row is None else (str(row.candidate_id), row.candidate_since)


async def application_org(conn: AsyncConnection, application_id: str) -> str | None:
    query = select(applications.c.org_id).where(applications.c.id == application_id)
    return (await conn.execute(query)).scalar_one_or_none()


async def context(
    conn: AsyncConnection, conversation_id: str, *, for_update: bool = False
) -> RowMapping | None:
    """Everything policy and rendering need about one conversation."""
    query = _context_query().where(conversations.c.id == conversation_id)
    if for_update:
        query = query.with_for_update(of=conversations)
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


async def contexts_for_update(
    conn: AsyncConnection, conversation_ids: Sequence[str]
) -> dict[str, RowMapping]:
    """Lock a batch's conversations in id order, so concurrent batches on
    several workers can never deadlock, and return their contexts."""
    query = (
        _context_query()
        .where(conversations.c.id.in_(sorted(set(conversation_ids))))
        .order_by(conversations.c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=conversations)
    return {row["id"]: row for row in (await conn.execute(query)).mappings()}


async def context_by_application(conn: AsyncConnection, application_id: str) -> RowMapping | None:
    query = _context_query().where(conversations.c.application_id == application_id)
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


async def set_state(conn: AsyncConnection, conversation_id: str, state: str) -> None:
    await conn.execute(
        update(conversations).where(conversations.c.id == conversation_id).values(state=state)
    )


@dataclass(frozen=True)
class Advance:
    """New messages of one conversation in a send batch."""

    conversation_id: str
    last_seq: int
    at: datetime
    has_staff_message: bool
    state: str


async def advance_many(conn: AsyncConnection, changes: Sequence[Advance]) -> None:
    """Record a batch's new messages in one executemany (one round trip with
    psycopg's pipeline); the caller holds the row locks and computed the
    values from the locked rows."""
    if not changes:
        return
    stmt = (
        update(conversations)
        .where(conversations.c.id == bindparam("cid"))
        .values(
            last_seq=bindparam("seq"),
            last_message_at=bindparam("at"),
            has_staff_message=bindparam("staff"),
            state=bindparam("new_state"),
        )
    )
    await conn.execute(
        stmt,
        [
            {
                "cid": c.conversation_id,
                "seq": c.last_seq,
                "at": c.at,
                "staff": c.has_staff_message,
                "new_state": c.state,
            }
            for c in changes
        ],
    )


# -- read positions --------------------------------------------------------------


async def mark_read(
    conn: AsyncConnection, conversation_id: str, kind: str, person_id: str, seq: int, at: datetime
) -> bool:
    """Move a reader's position forward (never back). True if it moved."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(read_positions).values(
        conversation_id=conversation_id,
        reader_kind=kind,
        reader_id=person_id,
        seq=seq,
        updated_at=at,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["conversation_id", "reader_kind", "reader_id"],
        set_={"seq": stmt.excluded.seq, "updated_at": stmt.excluded.updated_at},
        where=read_positions.c.seq < stmt.excluded.seq,
    )
    result = await conn.execute(stmt)
    return bool(result.rowcount)


async def read_seq(conn: AsyncConnection, conversation_id: str, kind: str, person_id: str) -> int:
    query = select(read_positions.c.seq).where(
        read_positions.c.conversation_id == conversation_id,
        read_positions.c.reader_kind == kind,
        read_positions.c.reader_id == person_id,
    )
    return int((await conn.execute(query)).scalar_one_or_none() or 0)


async def readers(conn: AsyncConnection, conversation_id: str) -> list[RowMapping]:
    query = select(read_positions).where(read_positions.c.conversation_id == conversation_id)
    return list((await conn.execute(query)).mappings())


def unread_count(kind: str, person_id: str) -> ColumnElement[int]:
    """Messages of the other side after the viewer's read position, per
    conversation row. A colleague's message to the candidate is not news
    for another staff member: their unread badge counts candidate messages
    (and a candidate's counts staff messages)."""
    position = (
        select(read_positions.c.seq)
        .where(
            read_positions.c.conversation_id == conversations.c.id,
            read_positions.c.reader_kind == kind,
            read_positions.c.reader_id == person_id,
        )
        .scalar_subquery()
    )
    return (
        select(func.count())
        .select_from(messages)
        .where(
            messages.c.conversation_id == conversations.c.id,
            messages.c.seq > func.coalesce(position, 0),
            messages.c.deleted == false(),
            messages.c.sender_kind != "system",
            messages.c.sender_kind != kind,
        )
        .scalar_subquery()
    )


async def unread_for(conn: AsyncConnection, conversation_id: str, kind: str, person_id: str) -> int:
    query = select(unread_count(kind, person_id)).where(conversations.c.id == conversation_id)
    return int((await conn.execute(query)).scalar_one_or_none() or 0)


# -- archive -----------------------------------------------------------------------


async def archive(conn: AsyncConnection, conversation_id: str, staff_id: str) -> None:
    values = {"conversation_id": conversation_id, "staff_id": staff_id}
    await upsert(conn, archives, values, [])


async def unarchive(conn: AsyncConnection, conversation_id: str, staff_id: str) -> None:
    await conn.execute(
        delete(archives).where(
            archives.c.conversation_id == conversation_id, archives.c.staff_id == staff_id
        )
    )


# -- the inbox listing ---------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    filter: str = "all"  # all | unread | messaged | archived
    q: str = ""
    sort: str = "newest"  # unread | newest | oldest
    after: tuple[int, str, str] | None = None  # keyset: (unread flag, activity ISO, id)
    limit: int = 50


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_conversations(
    conn: AsyncConnection,
    kind: str,
    person_id: str,
    query: ListQuery,
    *,
    org_id: str | None = None,
    application_ids: Sequence[str] = (),
) -> list[RowMapping]:
    """One page of a viewer's conversations, with unread counts.

    Staff see their organisation's conversations, candidates those of the
    applications in their session. Paging is by keyset on the sort key, so a
    page never repeats or skips a row while new messages arrive.
    """
    unread = unread_count(kind, person_id).label("unread")
    # A conversation's last activity is its newest message, or the application
    # itself while nobody has written yet.
    activity = func.coalesce(conversations.c.last_message_at, applications.c.applied_at)
    unread_flag = case((unread_count(kind, person_id) > 0, 1), else_=0)
    is_archived = exists().where(
        archives.c.conversation_id == conversations.c.id, archives.c.staff_id == person_id
    )
    stmt = _context_query().add_columns(unread, activity.label("activity_at"))
    if kind == "staff":
        stmt = stmt.where(conversations.c.org_id == org_id)
        stmt = stmt.where(is_archived if query.filter == "archived" else ~is_archived)
    else:
        # The session names the applications; the candidate must still be
        # theirs (the host may have moved an application to someone else).
        stmt = stmt.where(
            conversations.c.application_id.in_(list(application_ids)),
            applications.c.candidate_id == person_id,
        )
        if query.filter == "archived":
            stmt = stmt.where(false())
    if query.filter == "unread":
        stmt = stmt.where(unread_count(kind, person_id) > 0)
    elif query.filter == "messaged":
        stmt = stmt.where(conversations.c.last_seq > 0)
    if query.q.strip():
        pattern = _like_pattern(query.q.strip())
        body_match = exists().where(
            messages.c.conversation_id == conversations.c.id,
            messages.c.deleted == false(),
            func.lower(messages.c.body).like(pattern, escape="\\"),
        )
        stmt = stmt.where(
            or_(
                func.lower(candidates.c.name).like(pattern, escape="\\"),
                func.lower(jobs.c.title).like(pattern, escape="\\"),
                body_match,
            )
        )
    flag_key = unread_flag if query.sort == "unread" else literal(0)
    descending = query.sort != "oldest"
    if query.after is not None:
        flag, at_iso, last_id = query.after
        at = datetime.fromisoformat(at_iso)
        if descending:
            stmt = stmt.where(
                or_(
                    flag_key < flag,
                    and_(flag_key == flag, activity < at),
                    and_(flag_key == flag, activity == at, conversations.c.id < last_id),
                )
            )
        else:
            stmt = stmt.where(
                or_(
                    activity > at,
                    and_(activity == at, conversations.c.id > last_id),
                )
            )
    if descending:
        stmt = stmt.order_by(flag_key.desc(), activity.desc(), conversations.c.id.desc())
    else:
        stmt = stmt.order_by(activity.asc(), conversations.c.id.asc())
    stmt = stmt.add_columns(flag_key.label("unread_flag")).limit(query.limit + 1)
    return list((await conn.execute(stmt)).mappings())


async def org_conversation_ids(conn: AsyncConnection, org_id: str) -> list[str]:
    query = select(conversations.c.id).where(conversations.c.org_id == org_id)
    return [str(r) for r in (await conn.execute(query)).scalars()]
