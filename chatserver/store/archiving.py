"""Archives: a staff member's own "done with this" mark on a conversation,
which moves it out of their inbox listing into the archived filter."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store.people import upsert
from chatserver.store.tables import archives


async def archive(conn: AsyncConnection, conversation_id: str, staff_id: str) -> None:
    values = {"conversation_id": conversation_id, "staff_id": staff_id}
    await upsert(conn, archives, values, [])


async def unarchive(conn: AsyncConnection, conversation_id: str, staff_id: str) -> None:
    await conn.execute(
        delete(archives).where(
            archives.c.conversation_id == conversation_id, archives.c.staff_id == staff_id
        )
    )


async def is_archived(conn: AsyncConnection, conversation_id: str, staff_id: str) -> bool:
    found = await conn.execute(
        select(archives.c.conversation_id).where(
            archives.c.conversation_id == conversation_id, archives.c.staff_id == staff_id
        )
    )
    return found.first() is not None
