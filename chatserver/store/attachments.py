"""Uploaded files' metadata; the bytes live under CHAT_ATTACHMENTS_DIR."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store.tables import attachments, messages


async def add(conn: AsyncConnection, row: Mapping[str, Any]) -> None:
    await conn.execute(insert(attachments).values(**row))


async def get_with_conversation(conn: AsyncConnection, attachment_id: str) -> RowMapping | None:
    """The attachment and, once it is sent, the conversation it belongs to."""
    query = (
        select(attachments, messages.c.conversation_id)
        .outerjoin(messages, messages.c.id == attachments.c.message_id)
        .where(attachments.c.id == attachment_id)
    )
    return (await conn.execute(query)).mappings().first()


async def unsent_of(
    conn: AsyncConnection, attachment_ids: Sequence[str], kind: str, person_id: str
) -> list[RowMapping]:
    """Those of these attachments that this person uploaded and has not sent yet."""
    query = select(attachments).where(
        attachments.c.id.in_(list(attachment_ids)),
        attachments.c.uploader_kind == kind,
        attachments.c.uploader_id == person_id,
        attachments.c.message_id.is_(None),
    )
    return list((await conn.execute(query)).mappings())
