"""Applications and the conversation each has: the rows the host's sync
writes, the send path advances and the conversation's state lives in."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import dialect
from chatserver.store.people import upsert
from chatserver.store.tables import applications, conversations


def new_conversation_id() -> str:
    return secrets.token_hex(8)


async def upsert_application(
    conn: AsyncConnection,
    application_id: str,
    org_id: str,
    job_id: str,
    candidate_id: str,
    status: str,
    applied_at: datetime,
    now: datetime,
) -> tuple[str | None, str | None, str]:
    """Insert or update an application and make sure it has its conversation.

    Returns the previous status and candidate (None when the application is
    new) and the conversation id. A new candidate restarts
    `candidate_since`, which revokes every candidate link signed before.
    """
    query = select(applications.c.status, applications.c.candidate_id).where(
        applications.c.id == application_id
    )
    previous = (await conn.execute(await dialect.for_update(conn, query))).first()
    values = {
        "id": application_id,
        "org_id": org_id,
        "job_id": job_id,
        "candidate_id": candidate_id,
        "status": status,
        "applied_at": applied_at,
        "candidate_since": now,
    }
    keys = ["job_id", "candidate_id", "status", "applied_at"]
    if previous is not None and previous.candidate_id != candidate_id:
        keys.append("candidate_since")
    await upsert(conn, applications, values, keys)
    insert = dialect.insert(conn)
    await conn.execute(
        insert(conversations)
        .values(
            id=new_conversation_id(),
            application_id=application_id,
            org_id=org_id,
            state="open",
            last_seq=0,
            has_staff_message=False,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["application_id"])
    )
    conversation_id = (
        await conn.execute(
            select(conversations.c.id).where(conversations.c.application_id == application_id)
        )
    ).scalar_one()
    if previous is None:
        return None, None, str(conversation_id)
    return str(previous.status), str(previous.candidate_id), str(conversation_id)


class Binding(NamedTuple):
    """An application's candidate, and since when they hold it (and the
    application's organisation)."""

    candidate_id: str
    since: datetime | None
    org_id: str


async def application_link_binding(conn: AsyncConnection, application_id: str) -> Binding | None:
    """The application's binding, or None (no such application)."""
    return (await application_bindings(conn, [application_id])).get(application_id)


async def application_bindings(
    conn: AsyncConnection, application_ids: Collection[str]
) -> dict[str, Binding]:
    """The bindings of these applications, by id (the unknown ones left out)."""
    if not application_ids:
        return {}
    query = select(
        applications.c.id,
        applications.c.candidate_id,
        applications.c.candidate_since,
        applications.c.org_id,
    ).where(applications.c.id.in_(sorted(application_ids)))
    rows = await conn.execute(query)
    return {str(r.id): Binding(str(r.candidate_id), r.candidate_since, str(r.org_id)) for r in rows}


async def application_org(conn: AsyncConnection, application_id: str) -> str | None:
    query = select(applications.c.org_id).where(applications.c.id == application_id)
    return (await conn.execute(query)).scalar_one_or_none()


# Every worker runs this every 0.75 s: built once, the ids an expanding
# parameter (an IN over a fresh list leaves its bind parameter in a
# reference cycle, for the cycle collector).
_LAST_SEQS = select(conversations.c.id, conversations.c.last_seq).where(
    conversations.c.id.in_(bindparam("ids", expanding=True))
)


async def last_seqs(conn: AsyncConnection, conversation_ids: Sequence[str]) -> dict[str, int]:
    """Each conversation's newest seq: one query for every room of a worker
    (`realtime/hub.py`'s tail check)."""
    if not conversation_ids:
        return {}
    rows = await conn.execute(_LAST_SEQS, {"ids": list(conversation_ids)})
    return {str(row.id): int(row.last_seq) for row in rows}


async def set_state(conn: AsyncConnection, conversation_id: str, state: str) -> None:
    await conn.execute(
        update(conversations).where(conversations.c.id == conversation_id).values(state=state)
    )


@dataclass(frozen=True)
class Advance:
    """New messages of one conversation in a send batch."""

    conversation_id: str
    last_seq: int
    at: datetime
    has_staff_message: bool
    state: str


# Every send batch of the careful path (all of SQLite's): built once.
_ADVANCE = (
    update(conversations)
    .where(conversations.c.id == bindparam("cid"))
    .values(
        last_seq=bindparam("seq"),
        last_message_at=bindparam("at"),
        has_staff_message=bindparam("staff"),
        state=bindparam("new_state"),
    )
)


async def advance_many(conn: AsyncConnection, changes: Sequence[Advance]) -> None:
    """Record a batch's new messages in one executemany (one round trip with
    psycopg's pipeline); the caller holds the row locks and computed the
    values from the locked rows."""
    if not changes:
        return
    await conn.execute(
        _ADVANCE,
        [
            {
                "cid": c.conversation_id,
                "seq": c.last_seq,
                "at": c.at,
                "staff": c.has_staff_message,
                "new_state": c.state,
            }
            for c in changes
        ],
    )
