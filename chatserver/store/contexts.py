"""What policy and rendering need to know about a conversation: one row
joining the conversation with its application, job, candidate and
organisation, loaded alone, many at once, or locked for a send batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import dialect
from chatserver.store.tables import applications, candidates, conversations, jobs, organisations

CONTEXT_COLUMNS = (
    conversations.c.id,
    conversations.c.application_id,
    conversations.c.org_id,
    conversations.c.state,
    conversations.c.last_seq,
    conversations.c.last_message_at,
    conversations.c.has_staff_message,
    conversations.c.created_at,
    applications.c.status,
    applications.c.applied_at,
    applications.c.job_id,
    applications.c.candidate_id,
    jobs.c.title.label("job_title"),
    candidates.c.name.label("candidate_name"),
    candidates.c.email.label("candidate_email"),
    organisations.c.name.label("org_name"),
)


def joined() -> Select[Any]:
    """The context columns over their joins; callers add the WHERE (and the
    inbox its own joins)."""
    return (
        select(*CONTEXT_COLUMNS)
        .join(applications, applications.c.id == conversations.c.application_id)
        .join(jobs, jobs.c.id == applications.c.job_id)
        .join(candidates, candidates.c.id == applications.c.candidate_id)
        .join(organisations, organisations.c.id == conversations.c.org_id)
    )


async def load(
    conn: AsyncConnection, conversation_id: str, *, for_update: bool = False
) -> RowMapping | None:
    """Everything policy and rendering need about one conversation."""
    query = joined().where(conversations.c.id == conversation_id)
    if for_update:
        query = query.with_for_update(of=conversations)
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row


async def load_many(
    conn: AsyncConnection, conversation_ids: Sequence[str]
) -> dict[str, RowMapping]:
    """`load` of many conversations in one query, without locks (the
    rooms of a worker catching up together)."""
    if not conversation_ids:
        return {}
    query = joined().where(conversations.c.id.in_(sorted(set(conversation_ids))))
    return {row["id"]: row for row in (await conn.execute(query)).mappings()}


async def lock_many(
    conn: AsyncConnection, conversation_ids: Sequence[str]
) -> dict[str, RowMapping]:
    """Lock a batch's conversations in id order, so concurrent batches on
    several workers can never deadlock, and return their contexts."""
    query = (
        joined()
        .where(conversations.c.id.in_(sorted(set(conversation_ids))))
        .order_by(conversations.c.id)
    )
    query = dialect.locked(conn, query, of=conversations)
    return {row["id"]: row for row in (await conn.execute(query)).mappings()}


async def load_by_application(conn: AsyncConnection, application_id: str) -> RowMapping | None:
    query = joined().where(conversations.c.application_id == application_id)
    row: RowMapping | None = (await conn.execute(query)).mappings().first()
    return row
