"""What policy and rendering need to know about a conversation: one row
joining the conversation with its application, job, candidate and
organisation, loaded alone, many at once, or locked for a send batch.

The rows leave this module as frozen dataclasses, so the domain reads
typed attributes instead of column names; a change is a `replace`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
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


@dataclass(frozen=True, slots=True)
class SendContext:
    """The facts a send needs: tenancy, the send rule's facts, the guard's
    facts and what its events name. All the PostgreSQL fast path reads
    (`store/send_batch.py`). Slotted: a worker keeps one per conversation
    room (`realtime/conversation_room.py`)."""

    id: str
    application_id: str
    org_id: str
    candidate_id: str
    state: str
    status: str
    has_staff_message: bool
    job_title: str


@dataclass(frozen=True, slots=True)
class ConversationContext(SendContext):
    """Everything policy and rendering need about one conversation."""

    last_seq: int
    last_message_at: datetime | None
    created_at: datetime
    applied_at: datetime
    job_id: str
    candidate_name: str
    candidate_email: str
    org_name: str

    def for_sending(self) -> SendContext:
        """The send's facts alone, for keeping (a room keeps one for as
        long as it has members; the rest of the context is not needed)."""
        return SendContext(*(getattr(self, f.name) for f in fields(SendContext)))

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ConversationContext:
        """A row with the `CONTEXT_COLUMNS` (others, such as the inbox's, are ignored)."""
        values = {field.name: row[field.name] for field in fields(cls)}
        # Typed as the dataclass says whatever the driver returned (SQLite
        # hands a boolean back as 0 or 1).
        values["has_staff_message"] = bool(values["has_staff_message"])
        values["last_seq"] = int(values["last_seq"])
        return cls(**values)


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


# Every new room's first read (`realtime/catchup.py`): built once, the ids
# an expanding parameter. An IN over a list built afresh for each call
# leaves SQLAlchemy's bind parameters in reference cycles, which only the
# cycle collector frees.
_LOAD_MANY = joined().where(conversations.c.id.in_(bindparam("ids", expanding=True)))
# Every send batch of the careful path (all of SQLite's) locks its
# conversations with this: built once for the same reason.
_LOCK_MANY = dialect.Lockable.of(_LOAD_MANY.order_by(conversations.c.id), of=conversations)


async def load(
    conn: AsyncConnection, conversation_id: str, *, for_update: bool = False
) -> ConversationContext | None:
    """Everything policy and rendering need about one conversation."""
    query = joined().where(conversations.c.id == conversation_id)
    if for_update:
        query = await dialect.for_update(conn, query, of=conversations)
    return await _first(conn, query)


async def load_many(
    conn: AsyncConnection, conversation_ids: Sequence[str]
) -> dict[str, ConversationContext]:
    """`load` of many conversations in one query, without locks (the
    rooms of a worker catching up together)."""
    if not conversation_ids:
        return {}
    return await _by_id(conn, _LOAD_MANY, {"ids": sorted(set(conversation_ids))})


async def lock_many(
    conn: AsyncConnection, conversation_ids: Sequence[str]
) -> dict[str, ConversationContext]:
    """Lock a batch's conversations in id order, so concurrent batches on
    several workers can never deadlock, and return their contexts."""
    return await _by_id(conn, await _LOCK_MANY.on(conn), {"ids": sorted(set(conversation_ids))})


async def load_by_application(
    conn: AsyncConnection, application_id: str
) -> ConversationContext | None:
    query = joined().where(conversations.c.application_id == application_id)
    return await _first(conn, query)


async def _first(conn: AsyncConnection, query: Select[Any]) -> ConversationContext | None:
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else ConversationContext.of(row)


async def _by_id(
    conn: AsyncConnection, query: Select[Any], params: dict[str, Any] | None = None
) -> dict[str, ConversationContext]:
    rows = (await conn.execute(query, params)).mappings()
    return {row["id"]: ConversationContext.of(row) for row in rows}
