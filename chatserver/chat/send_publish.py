"""Publishing what a send batch stored, after its commit and within a
bound: a stalled broker never holds an ack back, and rooms catch up from
the database (issue 16).

A message is encoded once, as the event its conversation's subscribers
get. Besides it, one small event on the organisation's channel (a
candidate's message: the staff bell, which the inbox feed also reads as
"this row changed"; a staff message: the row change) and, for a staff
message, the candidate's bell: nothing depends on how many staff the
organisation has (issue 10).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from chatserver.chat import bell, events
from chatserver.chat.policy import Role
from chatserver.chat.send_request import Stored
from chatserver.json_types import JSON

log = logging.getLogger(__name__)


def event_items(stored: Sequence[Stored]) -> list[tuple[str, JSON]]:
    """The events of stored messages, by channel. A repeat publishes its
    message event only."""
    items: list[tuple[str, JSON]] = []
    for s in stored:
        conversation_id = s.message["conversation"]
        channel = events.conversation_channel(conversation_id)
        org_channel = events.org_channel(s.conversation.org_id)
        job_title = s.conversation.job_title
        application_id = s.conversation.application_id
        items.extend((channel, events.message_event(line)) for line in s.lines)
        if s.reopened:
            items.append((channel, events.conversation_changed(s.conversation)))
        items.append((channel, events.message_event(s.message)))
        if s.repeat:
            continue
        if s.message["sender"]["kind"] == Role.STAFF.value:
            items.append((org_channel, events.inbox_changed(conversation_id)))
            candidate = events.person_channel(Role.CANDIDATE.value, s.conversation.candidate_id)
            note = bell.frame(s.message, Role.CANDIDATE, job_title, application_id)
            items.append((candidate, note))
        else:
            # One event tells every staff inbox page both: the bell, and
            # which conversation's row to bring up to date.
            note = bell.frame(s.message, Role.STAFF, job_title, application_id)
            items.append((org_channel, note))
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

    async def _publish_now(self, items: Sequence[tuple[str, JSON]]) -> None:
        try:
            await self._events.publish(items)
        except Exception:
            # Stored is stored: subscribers catch up from the database once
            # the broker is back (SPEC section 3.2).
            log.exception("publishing %d events failed", len(items))
