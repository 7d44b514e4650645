"""Applications and their conversations: context for policy, the inbox
listing, read positions and archives."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
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
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.roles import Role
from chatserver.store import contexts, dialect
from chatserver.store.folding import contains_pattern
from chatserver.store.people import upsert
from chatserver.store.tables import (
    applications,
    archives,
    candidates,
    conversations,
    hidden_messages,
    jobs,
    messages,
    read_positions,
    staff,
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
    insert = dialect.insert(conn)
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


async def last_seqs(conn: AsyncConnection, conversation_ids: Sequence[str]) -> dict[str, int]:
    """Each conversation's newest seq: one query for every room of a worker
    (`realtime/hub.py`'s tail check)."""
    if not conversation_ids:
        return {}
    query = select(conversations.c.id, conversations.c.last_seq).where(
        conversations.c.id.in_(conversation_ids)
    )
    return {str(row.id): int(row.last_seq) for row in await conn.execute(query)}


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
    """Move a reader's position forward (never back). True if it moved.
    Position 0 is where every reader starts, so reading up to 0 moves nothing."""
    if seq <= 0:
        return False
    insert = dialect.insert(conn)
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
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT
    # that changed nothing, which read as "moved".
    result = await conn.execute(stmt.returning(read_positions.c.seq))
    return result.first() is not None


async def mark_unread(
    conn: AsyncConnection, conversation_id: str, kind: str, person_id: str, at: datetime
) -> bool:
    """Move a reader's position back to just before the newest message that
    counts as unread for them, so it is unread again (never forward). True
    if it moved; False when that message is unread already or there is none."""
    newest = select(func.max(messages.c.seq)).where(
        messages.c.conversation_id == conversation_id,
        counts_as_unread(kind, literal(person_id), literal(0)),
    )
    target = (await conn.execute(newest)).scalar_one_or_none()
    if target is None:
        return False
    result = await conn.execute(
        update(read_positions)
        .where(
            read_positions.c.conversation_id == conversation_id,
            read_positions.c.reader_kind == kind,
            read_positions.c.reader_id == person_id,
            read_positions.c.seq >= target,
        )
        .values(seq=int(target) - 1, updated_at=at)
        .returning(read_positions.c.seq)
    )
    return result.first() is not None


async def readers(conn: AsyncConnection, conversation_id: str) -> list[RowMapping]:
    query = select(read_positions).where(read_positions.c.conversation_id == conversation_id)
    return list((await conn.execute(query)).mappings())


# -- unread counts -------------------------------------------------------------------


def other_side(kind: str) -> Role:
    """Whose messages are news for a reader: a colleague's message to the
    candidate is not news for another staff member, so staff count the
    candidate's messages and the candidate counts staff messages (system
    messages are nobody's news)."""
    return Role(kind).other


def _hidden_by(kind: str, reader: ColumnElement[str]) -> ColumnElement[bool]:
    """The current `messages` row was deleted by this reader for themselves.

    Everything but `hidden_messages` comes from the enclosing queries, at
    whatever depth: left to auto-correlation, a reader column of a query two
    levels up (the inbox feed's `staff`) would become a cross join here.
    """
    return (
        exists()
        .where(
            hidden_messages.c.message_id == messages.c.id,
            hidden_messages.c.viewer_kind == kind,
            hidden_messages.c.viewer_id == reader,
        )
        .correlate_except(hidden_messages)
    )


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
        ~_hidden_by(kind, reader),
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
    position = (
        select(read_positions.c.seq)
        .where(
            read_positions.c.conversation_id == conversations.c.id,
            read_positions.c.reader_kind == kind,
            read_positions.c.reader_id == reader,
        )
        .correlate_except(read_positions)
        .scalar_subquery()
    )
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


def _has_unread(kind: str, reader: ColumnElement[str], position: Any) -> ColumnElement[bool]:
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


async def unread_for(conn: AsyncConnection, conversation_id: str, kind: str, person_id: str) -> int:
    query = select(unread_count(kind, literal(person_id))).where(
        conversations.c.id == conversation_id
    )
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


class Filter(enum.StrEnum):
    ALL = "all"
    UNREAD = "unread"
    MESSAGED = "messaged"  # anybody ever wrote (deleted messages too; system lines are not)
    ARCHIVED = "archived"  # archived by this staff member; the others list the rest


class Sort(enum.StrEnum):
    UNREAD = "unread"  # conversations with unread messages first, then newest
    NEWEST = "newest"  # last activity, newest first
    OLDEST = "oldest"  # last activity, oldest first


@dataclass(frozen=True)
class Keyset:
    """Where a page ended: the sort key of its last row. `unread_flag` is 1
    when that row had unread messages (only the unread-first sort uses it);
    `activity` is aware UTC."""

    unread_flag: int
    activity: datetime
    conversation_id: str


@dataclass(frozen=True)
class ListQuery:
    filter: Filter = Filter.ALL
    # Already folded (chatserver/store/folding.py); empty means no search.
    folded_search: str = ""
    sort: Sort = Sort.NEWEST
    after: Keyset | None = None
    limit: int = 50


async def list_conversations(
    conn: AsyncConnection,
    kind: str,
    person_id: str,
    query: ListQuery,
    *,
    org_id: str | None = None,
    application_ids: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """One page (plus one row, to tell whether more follow) of a viewer's
    conversations, with their unread counts, `activity_at` and `unread_flag`.

    Staff see their organisation's conversations, candidates those of the
    applications in their session. A conversation's activity is its newest
    message's time, or the application's while nobody has written. Paging is
    by keyset on the sort key (ties broken by id), so a page never repeats
    or skips a row while new messages arrive.
    """
    if kind == Role.STAFF:
        scope = conversations.c.org_id == org_id
    else:
        # The session names the applications; the candidate must still be
        # theirs (the host may have moved an application to someone else).
        scope = and_(
            conversations.c.application_id.in_(list(application_ids)),
            applications.c.candidate_id == person_id,
        )
    reader = literal(person_id)
    # The viewer's read position, joined once; sorting and filtering by
    # unread ask only whether a row has anything unread (`_has_unread`), and
    # the counts are taken for the page's rows once it is chosen.
    position = read_positions.alias("viewer_position")
    has_unread = _has_unread(kind, reader, position.c.seq)
    activity = func.coalesce(conversations.c.last_message_at, applications.c.applied_at)
    stmt = (
        contexts.joined()
        .outerjoin(
            position,
            and_(
                position.c.conversation_id == conversations.c.id,
                position.c.reader_kind == kind,
                position.c.reader_id == reader,
            ),
        )
        .add_columns(activity.label("activity_at"))
        .where(scope)
    )
    is_archived = exists().where(
        archives.c.conversation_id == conversations.c.id, archives.c.staff_id == person_id
    )
    if kind == Role.STAFF:
        stmt = stmt.where(is_archived if query.filter == Filter.ARCHIVED else ~is_archived)
    elif query.filter == Filter.ARCHIVED:
        stmt = stmt.where(false())  # only staff archive
    if query.filter == Filter.UNREAD:
        stmt = stmt.where(has_unread)
    elif query.filter == Filter.MESSAGED:
        # Set by people's messages only (system lines leave it).
        stmt = stmt.where(conversations.c.last_message_at.is_not(None))
    if query.folded_search:
        stmt = stmt.where(_search_matches(kind, person_id, query.folded_search))
    flag: ColumnElement[int] = (
        case((has_unread, 1), else_=0) if query.sort == Sort.UNREAD else literal(0)
    )
    descending = query.sort != Sort.OLDEST
    if query.after is not None:
        key = query.after
        if descending:
            stmt = stmt.where(
                or_(
                    flag < key.unread_flag,
                    and_(flag == key.unread_flag, activity < key.activity),
                    and_(
                        flag == key.unread_flag,
                        activity == key.activity,
                        conversations.c.id < key.conversation_id,
                    ),
                )
            )
        else:
            stmt = stmt.where(
                or_(
                    activity > key.activity,
                    and_(activity == key.activity, conversations.c.id > key.conversation_id),
                )
            )
    if query.sort == Sort.UNREAD:
        stmt = stmt.order_by(flag.desc(), activity.desc(), conversations.c.id.desc())
    elif descending:
        # No constant sort key: SQLite then sorts a far smaller record.
        stmt = stmt.order_by(activity.desc(), conversations.c.id.desc())
    else:
        stmt = stmt.order_by(activity.asc(), conversations.c.id.asc())
    stmt = stmt.add_columns(flag.label("unread_flag")).limit(query.limit + 1)
    rows = [dict(row) for row in (await conn.execute(stmt)).mappings()]
    if rows:
        counted = select(conversations.c.id, unread_count(kind, reader)).where(
            conversations.c.id.in_([row["id"] for row in rows])
        )
        counts = {cid: int(n) for cid, n in await conn.execute(counted)}
        for row in rows:
            row["unread"] = counts[row["id"]]
    return rows


def _search_matches(kind: str, person_id: str, folded: str) -> ColumnElement[bool]:
    """The conversation's candidate name, job title or the text of a message
    this viewer can still read contains `folded`, compared folded on both
    sides (plain LIKE on the stored folded columns).

    The message text is searched per conversation row, through the index on
    (conversation_id, seq): a scalar subquery with LIMIT 1, which
    PostgreSQL cannot turn into one hashed scan of every tenant's messages
    (as an EXISTS or IN beside the ORs it did, and search then took as long
    for one organisation as the whole table's size).
    """
    pattern = contains_pattern(folded)
    first_match = (
        select(literal(1))
        .select_from(messages)
        .where(
            messages.c.conversation_id == conversations.c.id,
            messages.c.deleted == false(),
            messages.c.search_body.like(pattern, escape="\\"),
            ~_hidden_by(kind, literal(person_id)),
        )
        .limit(1)
        .correlate_except(messages)
        .scalar_subquery()
    )
    return or_(
        candidates.c.search_name.like(pattern, escape="\\"),
        jobs.c.search_title.like(pattern, escape="\\"),
        first_match.is_not(None),
    )


# -- inbox feed rows -------------------------------------------------------------------


@dataclass(frozen=True)
class InboxEntry:
    """One conversation as one staff member's inbox row shows it now."""

    conversation_id: str
    staff_id: str
    unread: int
    state: str
    status: str
    # The newest message people wrote that this staff member has not deleted
    # for themselves (a message deleted for everyone is still it: a
    # placeholder; a system line is not).
    last_message: RowMapping | None


async def inbox_entries(
    conn: AsyncConnection, conversation_ids: Sequence[str], staff_ids: Sequence[str]
) -> list[InboxEntry]:
    """Each (conversation, staff member) pair's inbox row, in two queries
    however many pairs: the inbox feed's query after a change.

    Only staff of the conversation's own organisation get an entry, so a
    caller's mistake cannot leak a row to another tenant.
    """
    if not conversation_ids or not staff_ids:
        return []
    reader = staff.c.id
    newest_visible = (
        select(func.max(messages.c.seq))
        .where(
            messages.c.conversation_id == conversations.c.id,
            messages.c.sender_kind != "system",
            ~_hidden_by(Role.STAFF, reader),
        )
        .correlate_except(messages)
        .scalar_subquery()
    )
    query = (
        select(
            conversations.c.id,
            reader.label("staff_id"),
            conversations.c.state,
            applications.c.status,
            unread_count(Role.STAFF, reader).label("unread"),
            newest_visible.label("last_seq"),
        )
        .select_from(
            conversations.join(
                applications, applications.c.id == conversations.c.application_id
            ).join(
                staff,
                and_(staff.c.id.in_(list(staff_ids)), staff.c.org_id == conversations.c.org_id),
            )
        )
        .where(conversations.c.id.in_(list(conversation_ids)))
    )
    rows = list((await conn.execute(query)).mappings())
    wanted = {(r["id"], int(r["last_seq"])) for r in rows if r["last_seq"] is not None}
    found = await _messages_at(conn, wanted)
    return [
        InboxEntry(
            conversation_id=r["id"],
            staff_id=r["staff_id"],
            unread=int(r["unread"]),
            state=r["state"],
            status=r["status"],
            last_message=None if r["last_seq"] is None else found.get((r["id"], r["last_seq"])),
        )
        for r in rows
    ]


async def _messages_at(
    conn: AsyncConnection, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], RowMapping]:
    """Messages by (conversation, seq)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    query = select(messages).where(
        or_(*(and_(messages.c.conversation_id == c, messages.c.seq == s) for c, s in wanted))
    )
    return {(r["conversation_id"], r["seq"]): r for r in (await conn.execute(query)).mappings()}
