"""Read positions: how far each reader has read a conversation, moved by
reading and by "mark as unread", and what is unread after it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, literal, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import dialect
from chatserver.store.tables import conversations, messages, read_positions
from chatserver.store.unread import counts_as_unread, unread_count


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


async def unread_for(conn: AsyncConnection, conversation_id: str, kind: str, person_id: str) -> int:
    query = select(unread_count(kind, literal(person_id))).where(
        conversations.c.id == conversation_id
    )
    return int((await conn.execute(query)).scalar_one_or_none() or 0)
