"""The inbox: one page of a viewer's conversations (filters, search, sort
and keyset paging) and the inbox feed's rows after a change."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.roles import Role
from chatserver.store import archiving, contexts, per_person
from chatserver.store.folding import contains_pattern
from chatserver.store.messages import hidden_by, text_contains
from chatserver.store.tables import (
    applications,
    candidates,
    conversations,
    jobs,
    messages,
    read_positions,
    staff,
)
from chatserver.store.unread import anything_unread, unread_count

# Built once: an alias is a tree of column objects in reference cycles,
# so one per query was both work and garbage for the cycle collector.
_VIEWER_POSITION = read_positions.alias("viewer_position")


class Filter(enum.StrEnum):
    ALL = "all"
    UNREAD = "unread"
    MESSAGED = "messaged"  # anybody ever wrote (deleted messages too; system lines are not)
    # Archived by this staff member, while the candidate has not written since
    # (store/archiving.py); the others list the rest.
    ARCHIVED = "archived"


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
    # unread ask only whether a row has anything unread (`unread.anything_unread`), and
    # the counts are taken for the page's rows once it is chosen.
    position = _VIEWER_POSITION
    has_unread = anything_unread(kind, reader, position.c.seq)
    activity = func.coalesce(conversations.c.last_message_at, applications.c.applied_at)
    stmt = (
        contexts.joined()
        .outerjoin(position, per_person.row_of(position, kind, reader))
        .add_columns(activity.label("activity_at"))
        .where(scope)
    )
    if kind == Role.STAFF:
        is_archived = archiving.in_force(reader)
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
            text_contains(folded),
            ~hidden_by(kind, literal(person_id)),
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


@dataclass(frozen=True)
class InboxEntry:
    """One conversation as one staff member's inbox row shows it now."""

    conversation_id: str
    staff_id: str
    unread: int
    state: str
    status: str
    # Who the conversation is with now (the host may give the application
    # to another candidate): the row's name.
    candidate_id: str
    candidate_name: str
    # The newest message people wrote that this staff member has not deleted
    # for themselves (a message deleted for everyone is still it: a
    # placeholder; a system line is not).
    last_message: RowMapping | None


def _inbox_entries() -> Select[Any]:
    """Each (conversation, staff member) pair's row: the staff are the
    readers, `staff.id` the column the unread count and the newest visible
    message correlate to."""
    reader = staff.c.id
    newest_visible = (
        select(func.max(messages.c.seq))
        .where(
            messages.c.conversation_id == conversations.c.id,
            messages.c.sender_kind != "system",
            ~hidden_by(Role.STAFF, reader),
        )
        .correlate_except(messages)
        .scalar_subquery()
    )
    return (
        select(
            conversations.c.id,
            reader.label("staff_id"),
            conversations.c.state,
            applications.c.status,
            candidates.c.id.label("candidate_id"),
            candidates.c.name.label("candidate_name"),
            unread_count(Role.STAFF, reader).label("unread"),
            newest_visible.label("last_seq"),
        )
        .select_from(
            conversations.join(applications, applications.c.id == conversations.c.application_id)
            .join(candidates, candidates.c.id == applications.c.candidate_id)
            .join(
                staff,
                and_(
                    staff.c.id.in_(bindparam("staff_ids", expanding=True)),
                    staff.c.org_id == conversations.c.org_id,
                ),
            )
        )
        .where(conversations.c.id.in_(bindparam("conversation_ids", expanding=True)))
    )


# The inbox feed runs this after every message: built once, the ids
# expanding parameters. Built per call, its EXISTS (`hidden_by`), scalar
# subqueries and INs were some 70 objects in reference cycles per message,
# for the cycle collector.
_INBOX_ENTRIES = _inbox_entries()


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
    params = {"conversation_ids": list(conversation_ids), "staff_ids": list(staff_ids)}
    rows = list((await conn.execute(_INBOX_ENTRIES, params)).mappings())
    wanted = {(r["id"], int(r["last_seq"])) for r in rows if r["last_seq"] is not None}
    found = await _messages_at(conn, wanted)
    return [
        InboxEntry(
            conversation_id=r["id"],
            staff_id=r["staff_id"],
            unread=int(r["unread"]),
            state=r["state"],
            status=r["status"],
            candidate_id=r["candidate_id"],
            candidate_name=r["candidate_name"],
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
