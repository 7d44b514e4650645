"""What the domain publishes after a commit, and on which channel.

Every event type is a member of `EventType`, built by its one constructor
here; consumers (rooms, revocation) compare against the same names.

Channels: `conv:<id>` carries a conversation's frames to its subscribers;
`org:<id>` tells the organisation's staff inboxes that a conversation
changed; `person:<kind>:<id>` reaches one person's connections (service
notifications). Payloads of `message`, `read`, `typing` and `deleted` events
are already the wire frames of SPEC section 5, so a worker decodes each once
(to learn the seq) and forwards the same bytes to every local socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import orjson

from chatserver.broker.base import Broker
from chatserver.json_types import JSON
from chatserver.store.contexts import SendContext


class EventType(StrEnum):
    """The `type` of every published event."""

    MESSAGE = "message"
    READ = "read"
    DELETED = "deleted"
    TYPING = "typing"
    CONVERSATION_CHANGED = "conversation_changed"
    INBOX_CHANGED = "inbox_changed"
    NOTIFICATION = "notification"
    DISCONNECT = "disconnect"


def conversation_channel(conversation_id: str) -> str:
    return f"conv:{conversation_id}"


def org_channel(org_id: str) -> str:
    return f"org:{org_id}"


def person_channel(kind: str, person_id: str) -> str:
    return f"person:{kind}:{person_id}"


def encode(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event)


def decode(payload: bytes) -> JSON:
    value = orjson.loads(payload)
    if not isinstance(value, dict):
        raise ValueError("event payload is not an object")
    return value


def message_event(message: JSON) -> JSON:
    return {"type": EventType.MESSAGE, "message": message}


def read_event(conversation_id: str, reader: Mapping[str, str], seq: int) -> JSON:
    """Someone read up to `seq`: the other side's read receipts."""
    return {
        "type": EventType.READ,
        "conversation": conversation_id,
        "reader": dict(reader),
        "seq": seq,
    }


def deleted_event(conversation_id: str, seq: int) -> JSON:
    """A message deleted for everyone: every page replaces it with a placeholder."""
    return {"type": EventType.DELETED, "conversation": conversation_id, "seq": seq}


def typing_event(conversation_id: str, who: Mapping[str, str]) -> JSON:
    """Someone is typing; ephemeral, never stored."""
    return {"type": EventType.TYPING, "conversation": conversation_id, "who": dict(who)}


def inbox_changed(conversation_id: str) -> JSON:
    """Staff sockets turn this into their own `inbox` frame (unread and the
    newest visible message are per user, so the feed reads them)."""
    return {"type": EventType.INBOX_CHANGED, "conversation": conversation_id}


def conversation_changed(ctx: SendContext) -> JSON:
    """State or status changed; each socket computes its own `can_send`."""
    return {
        "type": EventType.CONVERSATION_CHANGED,
        "conversation": ctx.id,
        "state": ctx.state,
        "status": ctx.status,
        "has_staff_message": ctx.has_staff_message,
    }


class DisconnectReason(StrEnum):
    """Why a person's sockets are closed on every worker."""

    # Their sessions ended (sign-out, removal by the host): a reconnect is refused.
    SESSION_ENDED = "session_ended"
    # What they may see changed (an application went to another candidate):
    # a reconnect is authorised afresh and no longer sees it.
    ACCESS_CHANGED = "access_changed"


def disconnect(reason: DisconnectReason) -> JSON:
    """Published on `person:<kind>:<id>` after the change was committed."""
    return {"type": EventType.DISCONNECT, "reason": reason.value}


class Events:
    """Publishes domain events; called only by chat actions, after commit."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        if items:
            await self.broker.publish_many([(channel, encode(event)) for channel, event in items])
