"""Who each reply address speaks for (`reply_addresses`)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import dialect
from chatserver.store.tables import reply_addresses

ID_BYTES = 8


async def ensure(
    conn: AsyncConnection, person_kind: str, person_id: str, conversation_id: str, now: datetime
) -> str:
    """The id of the person's reply address in the conversation, made on
    first use (concurrent first uses agree on one row)."""
    insert = dialect.insert(conn)
    await conn.execute(
        insert(reply_addresses)
        .values(
            id=secrets.token_hex(ID_BYTES),
            person_kind=person_kind,
            person_id=person_id,
            conversation_id=conversation_id,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["person_kind", "person_id", "conversation_id"])
    )
    query = select(reply_addresses.c.id).where(
        reply_addresses.c.person_kind == person_kind,
        reply_addresses.c.person_id == person_id,
        reply_addresses.c.conversation_id == conversation_id,
    )
    return str((await conn.execute(query)).scalar_one())


async def get(conn: AsyncConnection, address_id: str) -> RowMapping | None:
    query = select(reply_addresses).where(reply_addresses.c.id == address_id)
    return (await conn.execute(query)).mappings().first()
