"""What the domain publishes after a commit, and on which channel.

Every event type is a member of `EventType`, built by its one constructor
here; consumers (rooms, revocation) compare against the same names.

Channels: everything about a conversation is published once, on its
organisation's channel `org:<id>`, as a `Topic` (which conversation, and
what the bells need) followed by the event. A worker follows the channel
once for all its local interest in that organisation and routes each
payload by its topic (`realtime/streams.py`): to the conversation's room,
to the staff inbox feeds, and to the candidate's bell, so a message costs
one publish whoever hears it (issue 10). `person:<kind>:<id>` reaches one
person's connections (`disconnect`). Payloads of `message`, `read`,
`typing` and `deleted` events are already the wire frames of SPEC
section 5, so a worker decodes each once (to learn the seq) and forwards
the same bytes to every local socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

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


def conversation_name(conversation_id: str) -> str:
    """A conversation's name in logs, metrics and presence (not a channel:
    its events travel on its organisation's)."""
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
    """A staff inbox row changed with no conversation event to say so (a
    new application, a staff member's mark-unread or delete-for-me). Staff
    sockets turn this, and the conversation events that change a row, into
    their own `inbox` frame (unread and the newest visible message are per
    user, so the feed reads them)."""
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


@dataclass(frozen=True, slots=True)
class Topic:
    """What a conversation's event is about, read without decoding the
    event: where it goes (the conversation, the application whose
    candidate's bell may ring), what a bell says (the job title), and what
    kind of event it is and by whom (`by`: the sender's, reader's or
    typist's kind), so that a feed skips what is not for it. `again`: the
    event was published before (`Again`)."""

    org_id: str
    conversation_id: str
    application_id: str
    job_title: str
    type: EventType
    by: str | None = None
    again: bool = False


class Again(NamedTuple):
    """An event published again: a retried send found its message stored,
    and publishes it for rooms that may have missed it. Bells do not ring
    for it (they rang the first time, unless that publish was lost with
    its worker: a missed bell, never a doubled one); inbox rows, which are
    idempotent, take it."""

    ctx: SendContext
    event: Mapping[str, Any]


def topic(ctx: SendContext, event: Mapping[str, Any], again: bool = False) -> Topic:
    """The topic of `event`, an event about the conversation `ctx`."""
    kind = EventType(event["type"])
    by = None
    if kind is EventType.MESSAGE:
        by = event["message"]["sender"]["kind"]
    elif kind is EventType.READ:
        by = event["reader"]["kind"]
    elif kind is EventType.TYPING:
        by = event["who"]["kind"]
    return Topic(ctx.org_id, ctx.id, ctx.application_id, ctx.job_title, kind, by, again)


def envelope(about: Topic, event: Mapping[str, Any]) -> bytes:
    """The published payload: the topic on one line, then the event."""
    head = [
        about.conversation_id,
        about.application_id,
        about.job_title,
        about.type,
        about.by,
        about.again,
    ]
    return orjson.dumps(head) + b"\n" + orjson.dumps(event)


def open_envelope(org_id: str, payload: bytes) -> tuple[Topic, bytes]:
    """The topic and the event's bytes of a payload on `org:<org_id>`;
    ValueError if it is not one (orjson's decode errors are ValueErrors)."""
    head, newline, body = payload.partition(b"\n")
    fields = orjson.loads(head)
    if not newline or not isinstance(fields, list) or len(fields) != 6:
        raise ValueError("not a conversation event")
    conversation_id, application_id, job_title, kind, by, again = fields
    if not all(isinstance(v, str) for v in (conversation_id, application_id, job_title)):
        raise ValueError("not a conversation event")
    if (by is not None and not isinstance(by, str)) or not isinstance(again, bool):
        raise ValueError("not a conversation event")
    about = Topic(org_id, conversation_id, application_id, job_title, EventType(kind), by, again)
    return about, body


class Events:
    """Publishes domain events; called only by chat actions, after commit."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish(self, items: Sequence[tuple[SendContext, Mapping[str, Any]]]) -> None:
        """Events about conversations, each once on its organisation's
        channel (an `Again` marked as such)."""
        if items:
            await self.broker.publish_many(
                [envelope_of(item[0], item[1], isinstance(item, Again)) for item in items]
            )

    async def to_person(self, kind: str, person_id: str, event: Mapping[str, Any]) -> None:
        """An event for one person's connections, wherever they are."""
        await self.broker.publish(person_channel(kind, person_id), encode(event))


def envelope_of(
    ctx: SendContext, event: Mapping[str, Any], again: bool = False
) -> tuple[str, bytes]:
    """The channel and payload that publish `event` about `ctx`."""
    return org_channel(ctx.org_id), envelope(topic(ctx, event, again), event)
