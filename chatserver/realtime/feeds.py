"""Feeds: rooms that carry summaries, not a log.

A person's room brings their sockets service notifications (the bell) and
the `disconnect` that ends them; an organisation's room brings its staff
inbox pages their rows' changes. Neither replays what it missed: the page
fetches the numbers when it loads and the next change brings them up to date.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chatserver.broker.base import Broker
from chatserver.chat import inbox, wire
from chatserver.chat.events import EventType
from chatserver.chat.service import Chat
from chatserver.realtime import revocation
from chatserver.realtime.connection import Connection
from chatserver.realtime.room import Kick, Room, decode_event

log = logging.getLogger(__name__)


class PersonRoom(Room):
    """One person's sockets on this worker: service notifications (the bell),
    and the `disconnect` that ends them (`realtime/revocation.py`)."""

    __slots__ = ("members",)

    def __init__(self, channel: str, chat: Chat, broker: Broker, kick: Kick) -> None:
        super().__init__(channel, chat, broker, kick)
        self.members: set[Connection] = set()

    async def _payload(self, payload: bytes) -> None:
        event = decode_event(payload)
        if event is None or revocation.disconnect(self.members, event):
            return
        if event.get("type") == EventType.NOTIFICATION:
            self._push(list(self.members), payload.decode())

    async def _waited(self) -> None:
        """Never asked for: notifications have no order to restore."""

    async def _resync(self) -> None:
        """Missed notifications stay in the database; the bell's count is
        fetched by the page, so there is nothing to replay here."""


class OrgRoom(Room):
    """The staff inbox feeds of one organisation on this worker.

    Changes are coalesced: while one round of inbox rows is being queried,
    further changes collect in `_pending`, so a busy organisation costs one
    round of queries per change burst, never one per message per socket.
    What each staff member's frame says (their unread count, their newest
    visible message, state and status) is the domain's answer
    (`inbox.inbox_updates`); this room only carries it.
    """

    __slots__ = ("_dirty", "_flusher", "_pending", "members")

    def __init__(self, channel: str, chat: Chat, broker: Broker, kick: Kick) -> None:
        super().__init__(channel, chat, broker, kick)
        self.members: set[Connection] = set()
        # Changed conversation ids, in arrival order (a dict as ordered set).
        self._pending: dict[str, None] = {}
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        super().start()
        self._flusher = asyncio.create_task(self._flush_forever(), name=f"inbox {self.channel}")

    def stop(self) -> asyncio.Task[None] | None:
        if self._flusher is not None:
            self._flusher.cancel()
        return super().stop()

    async def _payload(self, payload: bytes) -> None:
        event = decode_event(payload)
        if event is None:
            return
        about: Any = event
        if event.get("type") == EventType.NOTIFICATION:
            # The bell of a candidate message: one event per organisation,
            # forwarded as it is to every staff member's inbox page, and
            # the news that its conversation's row changed.
            self._push(list(self.members), payload.decode())
            about = event.get("notification")
        elif event.get("type") != EventType.INBOX_CHANGED:
            return
        conversation_id = about.get("conversation") if isinstance(about, dict) else None
        if not isinstance(conversation_id, str):
            return
        self._pending[conversation_id] = None
        self._dirty.set()

    async def _waited(self) -> None:
        """Never asked for: inbox frames are summaries, delivered as they come."""

    async def _resync(self) -> None:
        """Inbox frames are summaries, not a log: the next change of each
        conversation brings its numbers up to date, and a page reload
        lists everything, so missed ones are not replayed."""

    async def _flush_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            pending, self._pending = list(self._pending), {}
            staff_ids = sorted({conn.viewer.id for conn in self.members})
            if not pending or not staff_ids:
                continue
            try:
                updates = await inbox.inbox_updates(self.chat, pending, staff_ids)
            except Exception:
                log.exception("inbox update of %s failed", self.channel)
                continue
            for staff_id, rows in updates.items():
                members = [conn for conn in self.members if conn.viewer.id == staff_id]
                for row in rows:
                    frame = wire.inbox_frame(
                        row.conversation, row.unread, row.last_message, row.state, row.status
                    )
                    self._push(members, frame)
