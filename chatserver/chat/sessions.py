"""Ending a person's sessions, and closing their open sockets on every
worker once a change to what they may see is committed."""

from __future__ import annotations

import logging

from chatserver.chat import events
from chatserver.chat.service import Chat
from chatserver.store import people

log = logging.getLogger(__name__)


async def sign_out(chat: Chat, kind: str, person_id: str) -> None:
    """End the person's sessions (every session issued before now: the
    session generation moves on) and close their open sockets."""
    async with chat.db.transaction() as conn:
        await people.end_sessions(conn, kind, person_id)
    await disconnect(chat, kind, person_id, events.DisconnectReason.SESSION_ENDED)


async def disconnect(
    chat: Chat, kind: str, person_id: str, reason: events.DisconnectReason
) -> None:
    """Close the person's sockets on every worker. Their sessions were
    already changed in the database, so a reconnect is checked afresh; a
    broker outage here only delays the close until the socket's next
    reconnect, it never undoes the revocation."""
    try:
        await chat.events.to_person(kind, person_id, events.disconnect(reason))
    except Exception as exc:  # the revocation itself is committed
        log.warning("could not publish the disconnect of %s %s: %s", kind, person_id, exc)
