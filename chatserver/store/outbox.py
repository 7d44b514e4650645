"""The email outbox: every email is a row here before it is sent.

Exactly-once sending rests on two things here: an email is inserted under a
unique key (`record` does nothing on a second insert of the same key), and
on PostgreSQL a sender claims a row with `FOR UPDATE SKIP LOCKED`, so two
notifier processes never hold the same email at once. What is due and what
an email covers is planned in `emails.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.store import dialect
from chatserver.store.tables import outgoing_emails

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
CANCELLED = "cancelled"  # every message it was about was read before sending
# What is kept of a failure's text (an SMTP reply, a refusal's reason): its
# first lines say what happened, and a hostile server's reply stays small.
ERROR_CHARS = 500


async def _insert(conn: AsyncConnection, email: Mapping[str, Any]) -> bool:
    """Insert an email unless one with its key exists. True if inserted."""
    stmt = dialect.insert(conn)(outgoing_emails).values(**email)
    result = await conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
    return bool(result.rowcount)


async def record(
    conn: AsyncConnection, about: Mapping[str, Any], kind: str, person_id: str, now: datetime
) -> bool:
    """Record an email to one person, due now; its text is composed when it
    is sent (`notify/compose.py`). `about` holds its key, topic and what it
    concerns. True if inserted (False: that key was recorded before)."""
    return await _insert(
        conn,
        {
            **about,
            "recipient_kind": kind,
            "recipient_id": person_id,
            "to_address": "",
            "subject": "",
            "text_body": "",
            "html_body": "",
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        },
    )


async def claim_due(conn: AsyncConnection, now: datetime) -> RowMapping | None:
    """The next email due, locked for this transaction on PostgreSQL (other
    notifiers skip it); on SQLite, simply the next one."""
    query = (
        select(outgoing_emails)
        .where(outgoing_emails.c.status == PENDING, outgoing_emails.c.next_attempt_at <= now)
        .order_by(outgoing_emails.c.next_attempt_at, outgoing_emails.c.id)
        .limit(1)
    )
    query = dialect.locked(conn, query, skip_locked=True)
    return (await conn.execute(query)).mappings().first()


async def _set(conn: AsyncConnection, email_id: int, **values: Any) -> None:
    await conn.execute(
        update(outgoing_emails)
        .where(outgoing_emails.c.id == email_id, outgoing_emails.c.status == PENDING)
        .values(**values)
    )


async def mark_sent(
    conn: AsyncConnection,
    email_id: int,
    attempts: int,
    at: datetime,
    sent: Mapping[str, str],
) -> None:
    """Sent; `sent` is what went out (to_address, subject, text_body, html_body)."""
    await _set(conn, email_id, status=SENT, attempts=attempts, sent_at=at, last_error=None, **sent)


async def mark_cancelled(conn: AsyncConnection, email_id: int) -> None:
    await _set(conn, email_id, status=CANCELLED)


async def mark_retry(
    conn: AsyncConnection, email_id: int, attempts: int, retry_at: datetime, error: str
) -> None:
    await _set(
        conn, email_id, attempts=attempts, next_attempt_at=retry_at, last_error=error[:ERROR_CHARS]
    )


async def mark_failed(conn: AsyncConnection, email_id: int, attempts: int, error: str) -> None:
    await _set(conn, email_id, status=FAILED, attempts=attempts, last_error=error[:ERROR_CHARS])


async def backlog(conn: AsyncConnection) -> int:
    """Emails recorded and not yet sent (including those waiting to retry)."""
    query = (
        select(func.count()).select_from(outgoing_emails).where(outgoing_emails.c.status == PENDING)
    )
    return int((await conn.execute(query)).scalar_one())
