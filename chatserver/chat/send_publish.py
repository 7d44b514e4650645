"""Publishing what a send batch stored, after its commit and within a
bound: a stalled broker never holds an ack back, and rooms catch up from
the database (issue 16).

A message is encoded once, as the event its conversation's subscribers
get, and published once, on its organisation's channel: the staff inbox
feeds and the bells derive what they show from it (`realtime/streams.py`),
so nothing depends on how many staff the organisation has, or on who
hears it (issue 10).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from chatserver.chat import events
from chatserver.chat.send_request import Stored
from chatserver.store.contexts import SendContext

log = logging.getLogger(__name__)


def event_items(stored: Sequence[Stored]) -> list[tuple[SendContext, Mapping[str, Any]]]:
    """The events of stored messages, each with its conversation: the
    system lines a send wrote first, a reopening, then the message (a
    repeat's `Again`, which rooms take and bells ignore). A change of who
    may send (a reopening, a first staff message) comes before the message."""
    items: list[tuple[SendContext, Mapping[str, Any]]] = []
    for s in stored:
        ctx = s.conversation
        items.extend((ctx, events.message_event(line)) for line in s.lines)
        if s.changed:
            items.append((ctx, events.conversation_changed(ctx)))
        message = events.message_event(s.message)
        items.append(events.Again(ctx, message) if s.repeat else (ctx, message))
    return items


class BoundedPublisher:
    """Publishes with a bound on the wait, never cancelling: a cancel
    landing in redis-py can be swallowed (Python 3.11), and a publish that
    ends late still helps. Late or failed, rooms catch up from the
    database."""

    def __init__(self, publisher: events.Events, timeout: float) -> None:
        self._events = publisher
        self.timeout = timeout
        # Publishes still running after their bound (kept referenced).
        self._publishing: set[asyncio.Task[None]] = set()

    async def publish(self, stored: Sequence[Stored]) -> None:
        items = event_items(stored)
        task = asyncio.get_running_loop().create_task(self._publish_now(items))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        await asyncio.wait({task}, timeout=self.timeout)
        if not task.done():
            log.warning(
                "publishing %d events takes over %.2f s; answered senders without it",
                len(items),
                self.timeout,
            )

    async def drain(self) -> None:
        """Give publishes still running one more bound (at shutdown)."""
        if self._publishing:
            await asyncio.wait(set(self._publishing), timeout=self.timeout)

    async def _publish_now(self, items: Sequence[tuple[SendContext, Mapping[str, Any]]]) -> None:
        try:
            await self._events.publish(items)
        except Exception:
            # Stored is stored: subscribers catch up from the database once
            # the broker is back (SPEC section 3.2).
            log.exception("publishing %d events failed", len(items))
