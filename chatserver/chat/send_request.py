"""What travels along the send flow: the request a sender queues, the
result it is answered with, and what a writer hands the publisher.

Its own module so that the queue (`chat/sending.py`), both writers
(`chat/send_fast.py`, `chat/send_careful.py`) and the publisher
(`chat/send_publish.py`) share the types without importing each other."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from chatserver.chat.identity import Viewer
from chatserver.errors import ChatError, invalid
from chatserver.json_types import JSON
from chatserver.store.contexts import SendContext
from chatserver.store.send_batch import ClientKey

# Message ids: 16 random bytes, as hex.
MESSAGE_ID_BYTES = 16


@dataclass(eq=False)
class SendRequest:
    viewer: Viewer
    conversation_id: str
    client_id: str
    body: str
    html: str
    attachment_ids: tuple[str, ...] = ()
    # How the message arrived when not through the app ("email"), stored
    # with it and shown on it (MESSAGE `via`).
    via: str | None = None
    # What search finds it by, folded (`formatting.searchable`); None: the
    # body itself, folded by the store.
    search_body: str | None = None
    future: asyncio.Future[SendResult] = field(default_factory=lambda: _new_future())
    # Answered `unavailable` before a writer took it: it is never written
    # (the client retries), so an overloaded queue sheds what nobody awaits.
    expired: bool = False
    # The loop time by which it is answered, `unavailable` if need be.
    deadline: float = 0.0

    @property
    def key(self) -> ClientKey:
        return (self.viewer.kind.value, self.viewer.id, self.client_id)


@dataclass(frozen=True)
class SendResult:
    message: JSON
    created: bool  # False: a retry that returned the original message


def _new_future() -> asyncio.Future[SendResult]:
    return asyncio.get_running_loop().create_future()


@dataclass
class Stored:
    """A message to publish after commit: written in this batch, or found
    stored by a retry (`repeat`), which publishes its `message` event again
    in case the first attempt committed but never published (a worker
    killed in between, a broker that timed out); rooms drop repeats by seq."""

    message: JSON
    # The conversation as the batch left it (its org, job and candidate
    # name the channels and the bell).
    conversation: SendContext
    # Sending changed who may send (it reopened the conversation, or it is
    # the staff message a candidate had to wait for): the change is
    # published with the message, for each socket to recompute can_send.
    changed: bool = False
    repeat: bool = False
    # System lines stored just before the message (its reopening), published first.
    lines: list[JSON] = field(default_factory=list)


Outcome = tuple[SendResult | ChatError, Stored | None]


def follow(
    batch: Sequence[SendRequest], i: int, first: int, original: Outcome | None
) -> Outcome | None:
    """A client_id sent again within the batch gets its first send's
    outcome (None: that one is not settled by this writer)."""
    if original is None:
        return None
    result = original[0]
    if isinstance(result, ChatError):
        return result, None
    if batch[i].conversation_id != batch[first].conversation_id:
        return reused_client_id(), None
    return SendResult(result.message, created=False), None


def message_ids(count: int) -> list[str]:
    """`count` random message ids from one system call."""
    width = MESSAGE_ID_BYTES * 2
    pool = os.urandom(MESSAGE_ID_BYTES * count).hex()
    return [pool[i : i + width] for i in range(0, len(pool), width)]


def reused_client_id() -> ChatError:
    return invalid("This client_id was already used for another conversation.")
