"""What is due: turning unread messages and digest hours into recorded emails.

One planning pass is one transaction. On PostgreSQL it first takes an
advisory lock, so however many notifiers run, one plans at a time and the
others go straight to sending. Each email is inserted under a deterministic
key together with the cursor that says which messages it covered, so a pass
that crashes plans nothing, and a pass that commits never plans the same
messages again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.notify.compose import Composer, Draft, zone
from chatserver.notify.metrics import EMAILS_PLANNED
from chatserver.settings import Settings
from chatserver.store import conversations, emails, people
from chatserver.store.db import Database
from chatserver.store.emails import CANDIDATE, STAFF, Due

# Messages older than this are never emailed about: a notifier that was down
# for a week does not wake people up about week-old messages, and each pass
# scans only recently active conversations.
LOOKBACK = timedelta(days=7)
# A digest lists at most this many conversations; more is a link to the inbox.
DIGEST_ITEMS = 50
# The local date is the same everywhere at most this far ahead of UTC (UTC+14).
MAX_UTC_OFFSET = timedelta(hours=14)


class Presence(Protocol):
    """Whether someone has the conversation open right now."""

    async def online(self, conversation_id: str, kind: str, person_id: str) -> bool: ...


def message_key(due: Due) -> str:
    """`msg:<conversation>:<last seq>:<kind>:<person>` — the sender parses
    the first two fields back to check the messages are still unread."""
    return f"msg:{due.conversation_id}:{due.last_seq}:{due.recipient_kind}:{due.recipient_id}"


def parse_message_key(key: str) -> tuple[str, int] | None:
    """The conversation and last seq of a message email; None for a digest."""
    kind, _, rest = key.partition(":")
    if kind != "msg":
        return None
    conversation_id, _, rest = rest.partition(":")
    seq, _, _ = rest.partition(":")
    return conversation_id, int(seq)


class Planner:
    def __init__(self, settings: Settings, composer: Composer, presence: Presence) -> None:
        self._settings = settings
        self._composer = composer
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
        contexts: dict[str, RowMapping | None] = {}
        planned = 0
        for kind in (CANDIDATE, STAFF):
            for due in await emails.due_each(conn, kind, cutoff, now - LOOKBACK):
                # Someone looking at the conversation sees the messages; they
                # are emailed later only if they leave without reading them.
                if await self._presence.online(due.conversation_id, kind, due.recipient_id):
                    continue
                if due.conversation_id not in contexts:
                    contexts[due.conversation_id] = await conversations.context(
                        conn, due.conversation_id
                    )
                context = contexts[due.conversation_id]
                recipient = await _person(conn, kind, due.recipient_id)
                sender_kind = STAFF if kind == CANDIDATE else CANDIDATE
                unread = await emails.unread_from(
                    conn, due.conversation_id, sender_kind, due.after_seq, due.last_seq
                )
                if context is not None and recipient is not None and unread:
                    draft = self._composer.messages_email(kind, recipient, context, unread)
                    planned += await _record(
                        conn, message_key(due), kind, due.recipient_id, draft, now
                    )
                await emails.advance_cursor(conn, due, now)
        return planned

    async def _plan_digests(self, conn: AsyncConnection, now: datetime) -> int:
        latest_date = (now + MAX_UTC_OFFSET).date().isoformat()
        planned = 0
        for reader in await emails.daily_readers(conn, latest_date):
            local = now.astimezone(zone(reader["timezone"]))
            local_date = local.date().isoformat()
            done = reader["last_on"] is not None and reader["last_on"] >= local_date
            if done or local.hour < self._settings.digest_hour:
                continue
            kind, person_id = reader["kind"], reader["id"]
            items = await emails.digest_items(
                conn, kind, person_id, now - LOOKBACK, DIGEST_ITEMS + 1
            )
            if items:
                draft = self._composer.digest_email(
                    kind, reader, items[:DIGEST_ITEMS], local_date, len(items) > DIGEST_ITEMS
                )
                key = f"digest:{local_date}:{kind}:{person_id}"
                planned += await _record(conn, key, kind, person_id, draft, now)
            await emails.mark_digest(conn, kind, person_id, local_date)
        return planned


async def _person(conn: AsyncConnection, kind: str, person_id: str) -> RowMapping | None:
    if kind == CANDIDATE:
        return await people.get_candidate(conn, person_id)
    return await people.get_staff(conn, person_id)


async def _record(
    conn: AsyncConnection, key: str, kind: str, person_id: str, draft: Draft, now: datetime
) -> int:
    row: Mapping[str, Any] = {
        "key": key,
        "recipient_kind": kind,
        "recipient_id": person_id,
        "to_address": draft.to_address,
        "subject": draft.subject,
        "text_body": draft.text,
        "html_body": draft.html,
        "status": emails.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    return int(await emails.record(conn, row))
