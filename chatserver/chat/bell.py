"""The bell: one entry per conversation, derived from what was read.

Nothing is stored per recipient when a message is sent (issue 10): a
person's entries come from the conversations they may see, their read
positions and their bell marks (`store/notifications.py`). Reading a
conversation clears its entry; marking an entry read (or all of them)
moves only the bell mark, never the read position that read receipts show.

A live `notification` frame tells open pages that a conversation has
something new; the page groups frames per conversation and ignores the one
the person has open and visible (static/js/bell.js).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatserver.chat.events import EventType
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.clock import wire_time
from chatserver.store import notifications
from chatserver.store.notifications import Entry, Scope

if TYPE_CHECKING:  # the send queue (a part of Chat) uses this module's frames
    from chatserver.chat.service import Chat

from chatserver.json_types import JSON

# Notification texts were stored in a column of this width; they stay short.
TEXT_MAX = 500


def scope_of(viewer: Viewer) -> Scope:
    if viewer.is_staff:
        return Scope(viewer.kind.value, viewer.id, viewer.org_id)
    return Scope(viewer.kind.value, viewer.id, None, viewer.application_ids)


def hears(viewer: Viewer, notification: JSON) -> bool:
    """Whether a live `notification` is this viewer's to see: a candidate's
    socket hears only of the applications opened in its session (a staff
    member's org feed carries only their organisation's)."""
    return viewer.is_staff or notification.get("application") in viewer.application_ids


def text(recipient: Role, sender_name: str, job_title: str, count: int = 1) -> str:
    """What an entry says: who wrote, about which job, how many messages."""
    lead = f"{count} new messages" if count > 1 else "New message"
    if recipient is Role.CANDIDATE:
        sentence = f"{lead} from {sender_name} about {job_title}"
    else:
        sentence = f"{lead} from {sender_name} ({job_title})"
    return sentence[:TEXT_MAX]


def _wire(recipient: Role, entry: Entry) -> JSON:
    return {
        "id": entry.conversation_id,
        "kind": "message",
        "conversation": entry.conversation_id,
        "message": entry.last_message_id,
        "count": entry.unread,
        "text": text(recipient, entry.last_sender_name, entry.job_title, entry.unread),
        "created_at": wire_time(entry.last_at),
        "read": entry.unread == 0,
    }


async def listing(chat: Chat, viewer: Viewer) -> JSON:
    """`GET /api/notifications`: the newest entries and how many are unread."""
    scope = scope_of(viewer)
    async with chat.db.transaction() as conn:
        found = await notifications.entries(conn, scope)
        unread = await notifications.unread_count(conn, scope)
    return {"notifications": [_wire(viewer.kind, e) for e in found], "unread": unread}


async def mark_read(chat: Chat, viewer: Viewer, conversation_id: str | None = None) -> None:
    """Mark one conversation's entry read, or all of the viewer's."""
    scope = scope_of(viewer)
    async with chat.db.transaction() as conn:
        wanted = None if conversation_id is None else [conversation_id]
        await notifications.mark(conn, scope, wanted)


def frame(message: JSON, recipient: Role, job_title: str, application_id: str) -> JSON:
    """The live `notification` frame about a new message (SPEC section 5)."""
    return {
        "type": EventType.NOTIFICATION,
        "notification": {
            "kind": "message",
            "conversation": message["conversation"],
            "application": application_id,
            "message": message["id"],
            "text": text(recipient, message["sender"]["name"], job_title),
            "created_at": message["created_at"],
        },
    }
