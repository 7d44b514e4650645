"""System lines: what happened to a conversation, told in the conversation.

A conversation that was ended or reopened, or whose application changed
status, gets a line in its timeline. The line is a message sent by PERSON
kind `system` (SPEC section 5) with a plain sentence as its body and the
event as data (MESSAGE `event`). Being a message, it takes the next seq in
the same transaction as the change, so history, catch-up after a reconnect,
the gap filling of the rooms and live delivery carry it with no machinery of
their own, in order with the messages around it.

Every line is for everyone who reads the conversation: a candidate already
sees their application's status (and whether the conversation is open) in
the conversation's header, so no line tells them anything they may not know.

A line is nobody's news and nobody's words: it never counts as unread (the
unread rule counts the other side's messages only), never notifies (neither
the bell nor email: both are written for people's messages), is not the
inbox row's preview and does not move the row (chatserver/store/messages.py
and the inbox queries leave it out), is not searched, and is not a
`message.sent` audit event (the change itself is audited). The transcript
tells the same events from the audit trail, in the same words (`sentence`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from html import escape

from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import views
from chatserver.chat.identity import Viewer
from chatserver.json_types import JSON
from chatserver.store import messages

SYSTEM_KIND = "system"
SYSTEM_ID = "system"
SYSTEM_NAME = "chatserver"
# The same width as people's message ids (chatserver/chat/send_request.py).
LINE_ID_BYTES = 16

STATUS_NAMES = {
    "submitted": "Submitted",
    "shortlisted": "Shortlisted",
    "interviewing": "Interviewing",
    "offered": "Offered",
    "hired": "Hired",
    "not_progressing": "Not progressing",
    "withdrawn": "Withdrawn",
}


class LineEvent(StrEnum):
    """What a system line tells (MESSAGE `event.type`)."""

    ENDED = "ended"
    REOPENED = "reopened"
    STATUS_CHANGED = "status_changed"


def status_name(status: object) -> str:
    return STATUS_NAMES.get(str(status), str(status or ""))


def sentence(event: LineEvent, who: str | None, before: object = None, after: object = None) -> str:
    """The line's words, also the transcript's for the same audit event. The
    host changes statuses, so nobody is named for those; a conversation is
    ended or reopened by a staff member (or, in old trails, by nobody named)."""
    actor = who or "The hiring team"
    if event is LineEvent.ENDED:
        return f"{actor} ended the conversation."
    if event is LineEvent.REOPENED:
        return f"{actor} reopened the conversation."
    return f"Application status changed from {status_name(before)} to {status_name(after)}."


@dataclass(frozen=True)
class Happened:
    """One event for a system line: who did it (PERSON, None for the host)
    and, for a status change, the statuses before and after."""

    event: LineEvent
    by: JSON | None = None
    before: str | None = None
    after: str | None = None

    def data(self) -> JSON:
        data: JSON = {"type": self.event.value, "by": self.by}
        if self.event is LineEvent.STATUS_CHANGED:
            data["from"] = self.before
            data["to"] = self.after
        return data

    def text(self) -> str:
        who = self.by["name"] if self.by else None
        return sentence(self.event, who, self.before, self.after)


def line_row(conversation_id: str, seq: int, happened: Happened, now: datetime) -> JSON:
    """The `messages` row of a system line (every column a send writes)."""
    line_id = secrets.token_hex(LINE_ID_BYTES)
    text = happened.text()
    return {
        "id": line_id,
        "conversation_id": conversation_id,
        "seq": seq,
        "sender_kind": SYSTEM_KIND,
        "sender_id": SYSTEM_ID,
        "sender_name": SYSTEM_NAME,
        # Unique per sender like a client's: the line's own id.
        "client_id": line_id,
        "body": text,
        "html": escape(text),
        "created_at": now,
        "deleted": False,
        "via": None,
        "event": happened.data(),
    }


async def append(
    conn: AsyncConnection, conversation_id: str, happened: Happened, now: datetime
) -> JSON:
    """Write a line after the conversation's last message, in the caller's
    transaction (the one that makes the change); its MESSAGE, to publish on
    the conversation's channel after the commit."""
    seq = await messages.next_seq(conn, conversation_id)
    row = line_row(conversation_id, seq, happened, now)
    await messages.insert_many(conn, [row])
    return views.message(row)


def reopened_line(conversation_id: str, seq: int, viewer: Viewer, now: datetime) -> JSON:
    """For the send path: the row of the line that says `viewer`'s message
    reopened the conversation, at `seq` (the locked conversation's next,
    which the caller advances past it). The line comes just before the
    message that reopened it; the caller stores it with the batch's
    messages and publishes its MESSAGE before theirs."""
    happened = Happened(LineEvent.REOPENED, by=viewer.person())
    return line_row(conversation_id, seq, happened, now)
