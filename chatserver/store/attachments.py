"""Uploaded files' metadata; the bytes live in `store/blobs.py`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import dialect
from chatserver.store.dialect import Lockable
from chatserver.store.messages import hidden_by
from chatserver.store.tables import attachments, messages


async def add(conn: AsyncConnection, row: Mapping[str, Any]) -> None:
    await conn.execute(insert(attachments).values(**row))


async def get_with_conversation(
    conn: AsyncConnection, attachment_id: str, viewer_kind: str, viewer_id: str
) -> RowMapping | None:
    """The attachment and, once it is sent, the conversation it belongs to,
    with `hidden`: whether its message is hidden from this viewer as history
    hides it (deleted for themselves; for a candidate, written before the
    application came to them, `messages.hidden_by`)."""
    hidden = hidden_by(viewer_kind, literal(viewer_id))
    query = (
        select(attachments, messages.c.conversation_id, hidden.label("hidden"))
        .outerjoin(messages, messages.c.id == attachments.c.message_id)
        .where(attachments.c.id == attachment_id)
    )
    return (await conn.execute(query)).mappings().first()


# Every send with attachments claims them with this: built once, the ids an
# expanding parameter (an IN over a fresh list leaves its bind parameter in
# a reference cycle, for the cycle collector). Locked on PostgreSQL: a send
# claiming the same file at the same moment waits, then finds it sent.
_UNSENT_OF = Lockable.of(
    select(attachments).where(
        attachments.c.id.in_(bindparam("ids", expanding=True)),
        attachments.c.uploader_kind == bindparam("kind"),
        attachments.c.uploader_id == bindparam("person_id"),
        attachments.c.message_id.is_(None),
    )
)


async def unsent_of(
    conn: AsyncConnection, attachment_ids: Sequence[str], kind: str, person_id: str
) -> list[RowMapping]:
    """Those of these attachments that this person uploaded and has not sent
    yet, locked until the transaction ends (`dialect.for_update`)."""
    params = {"ids": list(attachment_ids), "kind": kind, "person_id": person_id}
    return list((await conn.execute(await _UNSENT_OF.on(conn), params)).mappings())


_UNSENT_SINCE = select(func.count(), func.min(attachments.c.created_at)).where(
    attachments.c.uploader_kind == bindparam("kind"),
    attachments.c.uploader_id == bindparam("person_id"),
    attachments.c.created_at >= bindparam("since"),
    attachments.c.message_id.is_(None),
)


async def unsent_since(
    conn: AsyncConnection, kind: str, person_id: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many files this person uploaded since `since` and has not sent,
    and when the oldest of them was uploaded."""
    params = {"kind": kind, "person_id": person_id, "since": since}
    count, oldest = (await conn.execute(_UNSENT_SINCE, params)).one()
    return int(count), oldest


async def uploads_take_turns(conn: AsyncConnection, kind: str, person_id: str) -> None:
    """Until this transaction ends, this person's other uploads wait here:
    their count of unsent files and the row that adds one are then one
    step (uploads sent at once each found room before any was added)."""
    await dialect.take_turns(conn, f"unsent-uploads/{kind}:{person_id}")


def refers_to(sha256: ColumnElement[str]) -> ColumnElement[bool]:
    """Whether any attachment's file or thumbnail is the bytes that the
    column names (an index probe each: `ix_attachments_sha256`,
    `ix_attachments_thumbnail_sha256`)."""
    return or_(
        exists().where(attachments.c.sha256 == sha256),
        exists().where(attachments.c.thumbnail_sha256 == sha256),
    )


async def unreferenced(conn: AsyncConnection, sha256s: Collection[str]) -> list[str]:
    """Those of these hashes that no attachment refers to (one query)."""
    wanted = list(sha256s)
    referenced = (
        select(attachments.c.sha256)
        .where(attachments.c.sha256.in_(wanted))
        .union(
            select(attachments.c.thumbnail_sha256).where(attachments.c.thumbnail_sha256.in_(wanted))
        )
    )
    found = set((await conn.execute(referenced)).scalars())
    return sorted(set(wanted) - found)


async def delete_unsent_before(
    conn: AsyncConnection, before: datetime, limit: int
) -> tuple[int, set[str]]:
    """Delete at most `limit` files uploaded before `before` and not sent;
    how many, and the hashes of their files and thumbnails. A send claiming
    one of them at the same moment either holds its row first (then the
    file is sent and stays) or finds it gone (`not_found`)."""
    expired = (
        select(attachments.c.id)
        .where(attachments.c.message_id.is_(None), attachments.c.created_at < before)
        .limit(limit)
    )
    removed = await conn.execute(
        delete(attachments)
        .where(attachments.c.id.in_(expired.scalar_subquery()), attachments.c.message_id.is_(None))
        .returning(attachments.c.sha256, attachments.c.thumbnail_sha256)
    )
    rows = removed.all()
    return len(rows), {sha256 for row in rows for sha256 in row if sha256 is not None}


async def file_names(
    conn: AsyncConnection, keys: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], list[str]]:
    """The names of the files of these messages, by (conversation id, seq),
    each message's in the order its sender attached them (one query)."""
    if not keys:
        return {}
    query = (
        select(messages.c.conversation_id, messages.c.seq, attachments.c.name)
        .select_from(messages.join(attachments, attachments.c.message_id == messages.c.id))
        .where(or_(*(and_(messages.c.conversation_id == c, messages.c.seq == s) for c, s in keys)))
        .order_by(messages.c.conversation_id, messages.c.seq, attachments.c.position)
    )
    found: dict[tuple[str, int], list[str]] = {}
    for row in await conn.execute(query):
        found.setdefault((str(row.conversation_id), int(row.seq)), []).append(str(row.name))
    return found
