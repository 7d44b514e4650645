"""Messages, their attachments and per-viewer hiding."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.roles import Role
from chatserver.store import dialect
from chatserver.store.folding import contains_pattern, fold
from chatserver.store.people import upsert
from chatserver.store.tables import (
    applications,
    attachments,
    conversations,
    hidden_messages,
    messages,
)

ClientKey = tuple[str, str, str]  # (sender_kind, sender_id, client_id)
# Lines the service writes (chatserver/chat/timeline.py): in history, but
# never an inbox preview, never searched.
SYSTEM = "system"
# The largest seq a message can have: the column is a 32-bit INTEGER on
# PostgreSQL, which refuses to compare it with a larger parameter.
SEQ_MAX = 2**31 - 1


def hidden_by(kind: str, reader: ColumnElement[str]) -> ColumnElement[bool]:
    """The current `messages` row is not this reader's to see: they deleted
    it for themselves, or (a candidate) it was written before the
    application came to them (`before_candidate`). Either way it stays in
    history as a hidden placeholder, so seqs stay gapless.

    Everything but `hidden_messages` comes from the enclosing queries, at
    whatever depth: left to auto-correlation, a reader column of a query two
    levels up (the inbox feed's `staff`) would become a cross join here.
    """
    deleted_for_themselves = (
        exists()
        .where(
            hidden_messages.c.message_id == messages.c.id,
            hidden_messages.c.viewer_kind == kind,
            hidden_messages.c.viewer_id == reader,
        )
        .correlate_except(hidden_messages)
    )
    if kind == Role.CANDIDATE:
        return or_(deleted_for_themselves, before_candidate())
    return deleted_for_themselves


def before_candidate() -> ColumnElement[bool]:
    """The current `messages` row was written before its application came to
    its current candidate: the host gave the application to someone else
    since, and what was said with the previous candidate is no business of
    the next one (they see from `applications.candidate_since` on; staff
    see everything). Applications from before that column have no bound."""
    since = (
        select(applications.c.candidate_since)
        .select_from(
            conversations.join(applications, applications.c.id == conversations.c.application_id)
        )
        .where(conversations.c.id == messages.c.conversation_id)
        .correlate_except(conversations, applications)
        .scalar_subquery()
    )
    return messages.c.created_at < func.coalesce(since, messages.c.created_at)


def text_contains(folded: str) -> ColumnElement[bool]:
    """The current `messages` row's text, folded, contains `folded` (a search
    already folded, `store/folding.py`); a message deleted for everyone has
    no text left to find."""
    return and_(
        messages.c.deleted == false(),
        messages.c.search_body.like(contains_pattern(folded), escape="\\"),
    )


# PostgreSQL's lookup of a careful batch's client ids: built once, the keys
# an expanding parameter (an IN over a fresh list leaves its bind parameter
# in a reference cycle, for the cycle collector).
_BY_CLIENT_KEYS = select(messages).where(
    tuple_(messages.c.sender_kind, messages.c.sender_id, messages.c.client_id).in_(
        bindparam("keys", expanding=True)
    )
)


async def count_by_sender_via(
    conn: AsyncConnection,
    conversation_id: str,
    sender_kind: str,
    sender_id: str,
    via: str,
    since: datetime,
) -> int:
    """How many messages this sender posted in the conversation `via` a way
    in (`email`) since `since`, deleted ones included."""
    query = select(func.count()).where(
        messages.c.conversation_id == conversation_id,
        messages.c.sender_kind == sender_kind,
        messages.c.sender_id == sender_id,
        messages.c.via == via,
        messages.c.created_at >= since,
    )
    return int((await conn.execute(query)).scalar_one())


async def by_client_keys(
    conn: AsyncConnection, keys: Iterable[ClientKey]
) -> dict[ClientKey, RowMapping]:
    """Messages already stored under these client ids (idempotent retries)."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    if dialect.is_postgres(conn):
        rows = (await conn.execute(_BY_CLIENT_KEYS, {"keys": wanted})).mappings()
    else:
        # SQLite scans the whole table for a row-value IN over VALUES; an OR
        # of equalities probes the unique index once per key.
        condition = or_(
            *(
                and_(
                    messages.c.sender_kind == k,
                    messages.c.sender_id == s,
                    messages.c.client_id == c,
                )
                for k, s, c in wanted
            )
        )
        rows = (await conn.execute(select(messages).where(condition))).mappings()
    return {(r["sender_kind"], r["sender_id"], r["client_id"]): r for r in rows}


def with_search_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """A message row with what search finds it by: its `search_body` as the
    send path folded it (`formatting.searchable`: the words as shown and the
    body as written), else its body folded. Every insert path stores it (the
    column has no default, so one that forgets fails). Search looks for
    what people wrote, so a system line stores nothing."""
    searched = row.get("search_body")
    if row["sender_kind"] == SYSTEM:
        searched = ""
    elif searched is None:
        searched = fold(row["body"])
    # Every row of one executemany needs the same keys: people's messages
    # carry no event.
    return {"event": None, **row, "search_body": searched}


async def next_seq(conn: AsyncConnection, conversation_id: str) -> int:
    """Take the conversation's next seq for a system line: one atomic
    increment, which also holds the row lock until the transaction ends, so
    it serialises with sends exactly as they do with each other. The
    conversation's activity time and first-message facts stay as they are:
    a line is not a message anybody wrote."""
    result = await conn.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id)
        .values(last_seq=conversations.c.last_seq + 1)
        .returning(conversations.c.last_seq)
    )
    return int(result.scalar_one())


# The careful path's writes of every send batch (all of SQLite's), built
# once: no construction per batch, and no IN over a fresh list, whose bind
# parameter would be left in a reference cycle for the cycle collector.
_INSERT = insert(messages)
_ATTACH = (
    update(attachments)
    .where(attachments.c.id == bindparam("file"))
    .values(message_id=bindparam("to_message"), position=bindparam("place"))
)


async def insert_many(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await conn.execute(_INSERT, [with_search_body(row) for row in rows])


async def attach(conn: AsyncConnection, links: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Give each message its files, each file its place among them: the
    order of `attachment_ids`, which is the order the sender named them in
    (every reader lists them so, `attachments_for`). One statement for the
    whole batch (`links`: message id, its attachment ids)."""
    params = [
        {"file": file_id, "to_message": message_id, "place": place}
        for message_id, attachment_ids in links
        for place, file_id in enumerate(attachment_ids)
    ]
    if params:
        await conn.execute(_ATTACH, params)


async def get(conn: AsyncConnection, message_id: str) -> RowMapping | None:
    query = select(messages).where(messages.c.id == message_id)
    return (await conn.execute(query)).mappings().first()


async def history(
    conn: AsyncConnection,
    conversation_id: str,
    viewer_kind: str,
    viewer_id: str,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int | None = None,
) -> list[RowMapping]:
    """Messages in seq order with `hidden` and `before_candidate` columns
    for this viewer.

    With `after`, the oldest `limit` messages after it (catching up); without,
    the newest `limit` messages before `before` (scrolling up). Either way
    the result is oldest first.
    """
    hidden = hidden_by(viewer_kind, literal(viewer_id)).label("hidden")
    # Of the hidden, those that were never this reader's (a transcript
    # leaves them out rather than noting them as deleted).
    earlier = before_candidate() if viewer_kind == Role.CANDIDATE else false()
    query = select(messages, hidden, earlier.label("before_candidate")).where(
        messages.c.conversation_id == conversation_id
    )
    if before is not None:
        query = query.where(messages.c.seq < before)
    if after is not None:
        query = query.where(messages.c.seq > after).order_by(messages.c.seq)
        if limit is not None:
            query = query.limit(limit)
        return list((await conn.execute(query)).mappings())
    query = query.order_by(messages.c.seq.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(list((await conn.execute(query)).mappings())))


async def range_(
    conn: AsyncConnection, conversation_id: str, after: int, upto: int
) -> list[RowMapping]:
    """Messages with after < seq <= upto, for filling a live-stream gap."""
    query = (
        select(messages)
        .where(
            messages.c.conversation_id == conversation_id,
            messages.c.seq > after,
            messages.c.seq <= upto,
        )
        .order_by(messages.c.seq)
    )
    return list((await conn.execute(query)).mappings())


async def last(conn: AsyncConnection, conversation_id: str) -> RowMapping | None:
    query = (
        select(messages)
        .where(messages.c.conversation_id == conversation_id)
        .order_by(messages.c.seq.desc())
        .limit(1)
    )
    return (await conn.execute(query)).mappings().first()


async def last_visible(
    conn: AsyncConnection,
    conversation_ids: Sequence[str],
    viewer_kind: str,
    viewer_id: str,
    *,
    matching: str = "",
) -> dict[str, RowMapping]:
    """The newest message people wrote in each conversation that this viewer
    has not hidden: the inbox row's preview (a system line is not one).
    With `matching` (a folded search), the newest such message whose text
    contains it: what a search result shows, so the row says why it matched."""
    if not conversation_ids:
        return {}
    wanted = [
        messages.c.conversation_id.in_(list(conversation_ids)),
        messages.c.sender_kind != SYSTEM,
        ~hidden_by(viewer_kind, literal(viewer_id)),
    ]
    if matching:
        wanted.append(text_contains(matching))
    newest = (
        select(messages.c.conversation_id, func.max(messages.c.seq).label("seq"))
        .where(*wanted)
        .group_by(messages.c.conversation_id)
        .subquery()
    )
    query = select(messages).join(
        newest,
        and_(
            messages.c.conversation_id == newest.c.conversation_id, messages.c.seq == newest.c.seq
        ),
    )
    return {row["conversation_id"]: row for row in (await conn.execute(query)).mappings()}


async def mark_deleted(conn: AsyncConnection, message_id: str) -> set[str] | None:
    """Delete for everyone: the body goes, and so do the attachments (their
    rows, so their ids stop resolving). The hashes of their files and
    thumbnails, for `Blobs.release` once this commits; None when it was
    deleted already: the update is the check, so of two deletions at once
    one does it."""
    done = await conn.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.deleted.is_(False))
        .values(deleted=True, body="", html="", search_body="")
    )
    if done.rowcount != 1:
        return None
    removed = await conn.execute(
        delete(attachments)
        .where(attachments.c.message_id == message_id)
        .returning(attachments.c.sha256, attachments.c.thumbnail_sha256)
    )
    return {sha256 for row in removed for sha256 in row if sha256 is not None}


async def hide(conn: AsyncConnection, message_id: str, viewer_kind: str, viewer_id: str) -> None:
    values = {"message_id": message_id, "viewer_kind": viewer_kind, "viewer_id": viewer_id}
    await upsert(conn, hidden_messages, values, [])


# Every history page and every ack reads this: built once, the ids an
# expanding parameter (an IN over a fresh list leaves SQLAlchemy's bind
# parameters in reference cycles, for the cycle collector). A message's
# files in the order its sender named them (`attach`), never by upload time.
_ATTACHMENTS_FOR = (
    select(attachments)
    .where(attachments.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(attachments.c.message_id, attachments.c.position, attachments.c.id)
)


async def attachments_for(
    conn: AsyncConnection, message_ids: Sequence[str]
) -> dict[str, list[RowMapping]]:
    if not message_ids:
        return {}
    grouped: dict[str, list[RowMapping]] = defaultdict(list)
    rows = await conn.execute(_ATTACHMENTS_FOR, {"ids": list(message_ids)})
    for row in rows.mappings():
        grouped[row["message_id"]].append(row)
    return grouped
