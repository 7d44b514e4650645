"""Service notifications: the bell in the pages, one row per recipient."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store.tables import messages, notifications

# The bell lists recent notifications only; older ones stay in the table.
LIST_LIMIT = 50


async def add_many(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(notifications), list(rows))


async def recent(conn: AsyncConnection, kind: str, person_id: str) -> list[RowMapping]:
    query = (
        select(notifications)
        .where(notifications.c.recipient_kind == kind, notifications.c.recipient_id == person_id)
        .order_by(notifications.c.id.desc())
        .limit(LIST_LIMIT)
    )
    return list((await conn.execute(query)).mappings())


async def unread_count(conn: AsyncConnection, kind: str, person_id: str) -> int:
    query = (
        select(func.count())
        .select_from(notifications)
        .where(
            notifications.c.recipient_kind == kind,
            notifications.c.recipient_id == person_id,
            notifications.c.read_at.is_(None),
        )
    )
    return int((await conn.execute(query)).scalar_one())


async def mark_all_read(conn: AsyncConnection, kind: str, person_id: str, at: datetime) -> None:
    await conn.execute(
        update(notifications)
        .where(
            notifications.c.recipient_kind == kind,
            notifications.c.recipient_id == person_id,
            notifications.c.read_at.is_(None),
        )
        .values(read_at=at)
    )


async def mark_conversation_read(
    conn: AsyncConnection, kind: str, person_id: str, conversation_id: str, seq: int, at: datetime
) -> None:
    """Reading a conversation clears the bell entries of the messages read."""
    read_ids = select(messages.c.id).where(
        messages.c.conversation_id == conversation_id, messages.c.seq <= seq
    )
    await conn.execute(
        update(notifications)
        .where(
            notifications.c.recipient_kind == kind,
            notifications.c.recipient_id == person_id,
            notifications.c.conversation_id == conversation_id,
            notifications.c.read_at.is_(None),
            notifications.c.message_id.in_(read_ids),
        )
        .values(read_at=at)
    )
