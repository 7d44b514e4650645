"""What is due: turning unread messages and digest hours into recorded emails.

One planning pass is one transaction. On PostgreSQL it first takes an
advisory lock, so however many notifiers run, one plans at a time and the
others go straight to sending. Each email is inserted under a deterministic
key together with the cursor that says which messages it covered, so a pass
that crashes plans nothing, and a pass that commits never plans the same
messages again.

Planning records only what an email is about (a conversation and a seq
range, or a digest's date) and touches no name, address or text: the
sender composes the email when it sends it (`compose.py`). So nothing a
host stored about one person can make a pass fail for everyone, and an
email planned before a message was deleted for everyone cannot carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.notify.compose import LOOKBACK, zone
from chatserver.notify.metrics import EMAILS_PLANNED
from chatserver.roles import Role
from chatserver.settings import Settings
from chatserver.store import emails, outbox
from chatserver.store.db import Database
from chatserver.store.emails import DIGEST, MESSAGES, Due

# The local date is the same everywhere at most this far ahead of UTC (UTC+14).
MAX_UTC_OFFSET = timedelta(hours=14)


class Presence(Protocol):
    """Whether someone has the conversation open right now."""

    async def online(self, conversation_id: str, kind: str, person_id: str) -> bool: ...


def message_key(due: Due) -> str:
    """`msg:<conversation>:<last seq>:<kind>:<person>`: one email per
    recipient per batch of messages, however many notifiers plan."""
    return f"msg:{due.conversation_id}:{due.last_seq}:{due.recipient_kind}:{due.recipient_id}"


def digest_key(local_date: str, kind: str, person_id: str) -> str:
    return f"digest:{local_date}:{kind}:{person_id}"


class Planner:
    def __init__(self, settings: Settings, presence: Presence) -> None:
        self._settings = settings
        self._presence = presence

    async def plan(self, db: Database, now: datetime) -> int:
        """Record every email due at `now`; the number recorded."""
        async with db.transaction() as conn:
            if not await emails.try_planner_lock(conn):
                return 0
            planned = await self._plan_messages(conn, now)
            digests = await self._plan_digests(conn, now)
        if planned:
            EMAILS_PLANNED.labels("message").inc(planned)
        if digests:
            EMAILS_PLANNED.labels("digest").inc(digests)
        return planned + digests

    async def _plan_messages(self, conn: AsyncConnection, now: datetime) -> int:
        cutoff = now - timedelta(seconds=self._settings.notify_delay_seconds)
        planned = 0
        for kind in (Role.CANDIDATE, Role.STAFF):
            for due in await emails.due_each(conn, kind, cutoff, now - LOOKBACK):
                # Someone looking at the conversation sees the messages; they
                # are emailed later only if they leave without reading them.
                if await self._presence.online(due.conversation_id, kind, due.recipient_id):
                    continue
                row = {
                    "key": message_key(due),
                    "topic": MESSAGES,
                    "conversation_id": due.conversation_id,
                    "after_seq": due.after_seq,
                    "last_seq": due.last_seq,
                }
                planned += await _record(conn, row, kind, due.recipient_id, now)
                await emails.advance_cursor(conn, due, now)
        return planned

    async def _plan_digests(self, conn: AsyncConnection, now: datetime) -> int:
        """A digest goes out in the reader's CHAT_DIGEST_HOUR only (from :00
        to :59 local time), once per local date: someone who switches to the
        daily digest at 22:25 gets their first one the next morning."""
        latest_date = (now + MAX_UTC_OFFSET).date().isoformat()
        planned = 0
        for reader in await emails.daily_readers(conn, latest_date):
            local = now.astimezone(zone(reader["timezone"]))
            local_date = local.date().isoformat()
            done = reader["last_on"] is not None and reader["last_on"] >= local_date
            if done or local.hour != self._settings.digest_hour:
                continue
            kind, person_id = reader["kind"], reader["id"]
            if await emails.digest_items(conn, kind, person_id, now - LOOKBACK, 1):
                row = {
                    "key": digest_key(local_date, kind, person_id),
                    "topic": DIGEST,
                    "local_date": local_date,
                }
                planned += await _record(conn, row, kind, person_id, now)
            await emails.mark_digest(conn, kind, person_id, local_date)
        return planned


async def _record(
    conn: AsyncConnection, about: Mapping[str, Any], kind: str, person_id: str, now: datetime
) -> int:
    """Record the email; 1 if it is new, else 0."""
    return int(await outbox.record(conn, about, kind, person_id, now))
