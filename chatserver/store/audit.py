"""The audit trail: every state change of an application and its conversation.

Most changes are recorded as rows here, in the transaction that makes them.
Sends are not: a message row already says who sent what and when, so
`message.sent` events are read from the messages when the trail is read,
which keeps the send path at one row per message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.roles import Role
from chatserver.store.tables import audit_events, conversations, messages

# Senders whose messages are audited as `message.sent`: people. System lines
# (conversation ended, status changed…) are audited as those changes.
PEOPLE = tuple(Role)


async def record(
    conn: AsyncConnection,
    application_id: str,
    action: str,
    at: datetime,
    actor: dict[str, str] | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(audit_events).values(
            application_id=application_id,
            at=at,
            actor_kind=actor["kind"] if actor else None,
            actor_id=actor["id"] if actor else None,
            actor_name=actor["name"] if actor else None,
            action=action,
            detail=detail or {},
        )
    )


async def events_for(
    conn: AsyncConnection, application_id: str, *, since: datetime | None = None
) -> list[RowMapping]:
    """The application's events in order; with `since`, from then on."""
    query = (
        select(audit_events)
        .where(audit_events.c.application_id == application_id)
        .order_by(audit_events.c.id)
    )
    if since is not None:
        query = query.where(audit_events.c.at >= since)
    return list((await conn.execute(query)).mappings())


async def messages_sent(conn: AsyncConnection, application_id: str) -> list[RowMapping]:
    """Every message people sent in the application's conversation (deleted
    ones too: the send happened), in seq order."""
    query = (
        select(
            messages.c.id,
            messages.c.seq,
            messages.c.sender_kind,
            messages.c.sender_id,
            messages.c.sender_name,
            messages.c.created_at,
            messages.c.via,
        )
        .join(conversations, conversations.c.id == messages.c.conversation_id)
        .where(
            conversations.c.application_id == application_id,
            messages.c.sender_kind.in_(PEOPLE),
        )
        .order_by(messages.c.seq)
    )
    return list((await conn.execute(query)).mappings())
