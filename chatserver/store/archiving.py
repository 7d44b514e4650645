"""Archives: a staff member's own "done with this" mark on a conversation,
which moves it out of their inbox listing into the archived filter until
the candidate writes again.

THE archive rule (`in_force`): an archive row holds the conversation's last
seq when it was archived, and is in force only while no message of the
candidate has a greater seq. Any message the candidate wrote after it
counts, even one deleted since (for everyone, or by the staff member for
themselves): the reply did arrive, and a conversation that came back does
not leave the inbox again unasked. Staff messages (one's own or
colleagues') and system lines never bring it back. Archiving again moves
the mark to the conversation's current last seq. Nothing is written on the
send path: the listing asks per archived row, through the index on
(conversation_id, seq).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, delete, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.roles import Role
from chatserver.store.people import upsert
from chatserver.store.tables import archives, conversations, messages


async def archive(conn: AsyncConnection, conversation_id: str, staff_id: str) -> None:
    """Archive (or archive again) up to the conversation's last seq now."""
    last_seq = (
        select(conversations.c.last_seq)
        .where(conversations.c.id == conversation_id)
        .scalar_subquery()
    )
    values = {"conversation_id": conversation_id, "staff_id": staff_id, "seq": last_seq}
    await upsert(conn, archives, values, ["seq"])


async def unarchive(conn: AsyncConnection, conversation_id: str, staff_id: str) -> None:
    await conn.execute(
        delete(archives).where(
            archives.c.conversation_id == conversation_id, archives.c.staff_id == staff_id
        )
    )


def in_force(staff_id: ColumnElement[str]) -> ColumnElement[bool]:
    """Whether the current `conversations` row is archived for `staff_id`:
    they archived it and the candidate has written nothing since (the
    module's rule). The inbox listing's filters and the conversation's
    `archived` field both ask here."""
    reply_since = (
        select(literal(1))
        .select_from(messages)
        .where(
            messages.c.conversation_id == archives.c.conversation_id,
            messages.c.seq > archives.c.seq,
            messages.c.sender_kind == Role.CANDIDATE.value,
        )
        .correlate_except(messages)
        .exists()
    )
    return (
        select(literal(1))
        .select_from(archives)
        .where(
            archives.c.conversation_id == conversations.c.id,
            archives.c.staff_id == staff_id,
            ~reply_since,
        )
        .correlate_except(archives)
        .exists()
    )


async def is_archived(conn: AsyncConnection, conversation_id: str, staff_id: str) -> bool:
    found = await conn.execute(
        select(conversations.c.id).where(
            conversations.c.id == conversation_id, in_force(literal(staff_id))
        )
    )
    return found.first() is not None
