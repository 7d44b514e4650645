"""The WebSocket wire format of SPEC section 5, without any I/O.

`decode` turns one client frame into a typed dataclass or raises
`InvalidFrame` (an `invalid` ChatError that remembers the frame's
`client_id`, so the error frame can carry it). The `*_frame` functions
encode server frames once, as the text that goes on the wire. Being pure,
all of it is tested without an event loop, fuzzing included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

from chatserver.chat import ids
from chatserver.errors import ChatError, ErrorCode

# A frame's id fields are bounded by the longest id of any kind
# (`chat/ids.py`), which keeps a hostile id from bloating logs and queries.
MAX_ID_CHARS = ids.MAX_ID_CHARS
# Seqs travel to browsers, whose numbers are exact only up to 2**53 - 1.
MAX_SEQ = 2**53 - 1
# More ids than this cannot be a real message (the domain allows 5); refusing
# early keeps a hostile frame from making thousands of lookups.
MAX_ATTACHMENT_IDS = 64
MAX_CLIENT_ID_CHARS = ids.CLIENT_ID_MAX_CHARS


class InvalidFrame(ChatError):
    """A malformed client frame; `client_id` is echoed in the error frame."""

    def __init__(self, message: str, client_id: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID, message)
        self.client_id = client_id


@dataclass(frozen=True, slots=True)
class Subscribe:
    conversation: str
    after: int = 0


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    conversation: str


@dataclass(frozen=True, slots=True)
class Send:
    conversation: str
    client_id: str
    body: str
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Read:
    conversation: str
    seq: int


@dataclass(frozen=True, slots=True)
class Typing:
    conversation: str


@dataclass(frozen=True, slots=True)
class Inbox:
    """Follow the organisation's inbox feed (staff)."""


@dataclass(frozen=True, slots=True)
class Ping:
    """Answered with a pong."""


ClientFrame: TypeAlias = Subscribe | Unsubscribe | Send | Read | Typing | Inbox | Ping


def decode(data: str | bytes) -> ClientFrame:
    """One client frame, validated; raises `InvalidFrame` naming the problem."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidFrame("A frame must be a JSON object.") from None
    if not isinstance(value, dict):
        raise InvalidFrame("A frame must be a JSON object.")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise InvalidFrame("A frame needs a string `type`.")
    parse = _PARSERS.get(kind)
    if parse is None:
        raise InvalidFrame(f"Unknown frame type {kind[:40]!r}.")
    return parse(value)


def _conversation(frame: Mapping[str, Any], client_id: str | None = None) -> str:
    value = frame.get("conversation")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise InvalidFrame(
            f"`conversation` must be an id of 1 to {MAX_ID_CHARS} characters.", client_id
        )
    return value


def _seq(frame: Mapping[str, Any], name: str, *, default: int | None = None) -> int:
    value = frame.get(name)
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise InvalidFrame(f"`{name}` must be a whole number from 0 to {MAX_SEQ}.")
    return value


def _subscribe(frame: Mapping[str, Any]) -> Subscribe:
    return Subscribe(_conversation(frame), _seq(frame, "after", default=0))


def _unsubscribe(frame: Mapping[str, Any]) -> Unsubscribe:
    return Unsubscribe(_conversation(frame))


def _send(frame: Mapping[str, Any]) -> Send:
    raw = frame.get("client_id")
    # Echoed back in the error frame only when it is a short string, so a
    # hostile frame cannot make the server repeat kilobytes at it.
    echo = raw if isinstance(raw, str) and len(raw) <= MAX_CLIENT_ID_CHARS else None
    if echo is None or not ids.is_client_id(echo):
        raise InvalidFrame("`client_id` must be a UUID.", echo)
    conversation = _conversation(frame, echo)
    body = frame.get("body", "")
    if not isinstance(body, str):
        raise InvalidFrame("`body` must be a string.", echo)
    attachments = frame.get("attachments")
    if attachments is None:
        attachments = []
    if (
        not isinstance(attachments, list)
        or len(attachments) > MAX_ATTACHMENT_IDS
        or not all(isinstance(a, str) and 0 < len(a) <= MAX_ID_CHARS for a in attachments)
    ):
        raise InvalidFrame("`attachments` must be a list of attachment ids.", echo)
    return Send(conversation, echo, body, tuple(attachments))


def _read(frame: Mapping[str, Any]) -> Read:
    return Read(_conversation(frame), _seq(frame, "seq"))


def _typing(frame: Mapping[str, Any]) -> Typing:
    return Typing(_conversation(frame))


def _inbox(frame: Mapping[str, Any]) -> Inbox:
    return Inbox()


def _ping(frame: Mapping[str, Any]) -> Ping:
    return Ping()


_PARSERS: dict[str, Callable[[Mapping[str, Any]], ClientFrame]] = {
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "send": _send,
    "read": _read,
    "typing": _typing,
    "inbox": _inbox,
    "ping": _ping,
}


# -- server frames ---------------------------------------------------------------


def encode(frame: Mapping[str, Any]) -> str:
    """A server frame as the JSON text that goes on the wire."""
    return orjson.dumps(frame).decode()


PONG = encode({"type": "pong"})


def error_frame(
    exc: ChatError, client_id: str | None = None, *, conversation: str | None = None
) -> str:
    """An `error` frame; `client_id` names the send it refuses,
    `conversation` the conversation whose `subscribe` it answers."""
    frame: dict[str, Any] = {"type": "error", **exc.as_dict()}
    if client_id is not None:
        frame["client_id"] = client_id
    if conversation is not None:
        frame["conversation"] = conversation
    return encode(frame)


def subscribed_frame(conversation: str, last_seq: int, state: str, can_send: bool) -> str:
    return encode(
        {
            "type": "subscribed",
            "conversation": conversation,
            "last_seq": last_seq,
            "state": state,
            "can_send": can_send,
        }
    )


def message_frame(message: Mapping[str, Any]) -> str:
    return encode({"type": "message", "message": message})


def ack_frame(client_id: str, message: Mapping[str, Any]) -> str:
    return encode({"type": "ack", "client_id": client_id, "message": message})


def inbox_frame(
    conversation: str,
    unread: int,
    last_message: Mapping[str, Any] | None,
    state: str,
    status: str,
    candidate: Mapping[str, Any],
) -> str:
    """`state`, `status` and `candidate` are added to SPEC 5's fields so a
    page can update the whole row live (an ended conversation, the host's
    status change, the application given to another candidate)."""
    return encode(
        {
            "type": "inbox",
            "conversation": conversation,
            "unread": unread,
            "last_message": last_message,
            "state": state,
            "status": status,
            "candidate": candidate,
        }
    )
