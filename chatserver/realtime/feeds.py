"""Feeds: rooms that carry summaries, not a log.

A person's room brings their sockets service notifications (the bell) and
the `disconnect` that ends them; an organisation's room brings its staff
inbox pages their rows' changes. Neither replays what it missed: the page
fetches the numbers when it loads and the next change brings them up to date.

So a feed needs no order, no waits and no catch-up, and it receives through
a broker `Listener`: each payload is handled by a synchronous callback from
the broker's dispatch, with no task, coroutine or queue per room. A worker
holds one person room per connected person, thousands of idle ones; a
conversation room (`conversation_room.py`) keeps its task, which order and
gap waits need.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any

from chatserver.broker.base import Broker, Listener
from chatserver.chat import bell, inbox, wire
from chatserver.chat.events import EventType
from chatserver.chat.service import Chat
from chatserver.realtime import revocation
from chatserver.realtime.connection import Connection
from chatserver.realtime.room import Kick, decode_event, push

log = logging.getLogger(__name__)


class Feed(ABC):
    """One channel's listener and the local sockets that follow it.

    Slotted and taskless: all it holds while idle is its members and the
    listener. Handling a payload never raises (what it would is logged) and
    never awaits: a member too slow for a frame is kicked."""

    __slots__ = ("_broker", "_kick", "_listener", "channel", "chat", "members")

    def __init__(self, channel: str, chat: Chat, broker: Broker, kick: Kick) -> None:
        self.channel = channel
        self.chat = chat
        self._broker = broker
        self._kick = kick
        self.members: set[Connection] = set()
        self._listener: Listener | None = None

    def start(self) -> None:
        self._listener = self._broker.listen(self.channel, self._receive)

    def _receive(self, payload: bytes) -> None:
        """The listener's callback: handle the payload one loop step later,
        as a task woken by this dispatch would. A conversation room woken by
        an earlier event of the same dispatch (a message) so pushes its
        frame before this one (the message's bell), as when feeds had a
        task of their own."""
        asyncio.get_running_loop().call_soon(self._handle, payload)

    def _handle(self, payload: bytes) -> None:
        try:
            self._payload(payload)
        except Exception:
            log.exception("feed %s failed on a payload", self.channel)

    def stop(self) -> asyncio.Task[None] | None:
        """Release the listener (the broker unsubscribes the channel when no
        one else here follows it); a task to wait for, if the feed has one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.release()
        return None

    @abstractmethod
    def _payload(self, payload: bytes) -> None:
        """One published payload, handled without waiting."""


class PersonRoom(Feed):
    """One person's sockets on this worker: service notifications (the bell),
    and the `disconnect` that ends them (`realtime/revocation.py`)."""

    __slots__ = ()

    def _payload(self, payload: bytes) -> None:
        event = decode_event(payload)
        if event is None or revocation.disconnect(self.members, event):
            return
        notification = event.get("notification")
        if event.get("type") == EventType.NOTIFICATION and isinstance(notification, dict):
            members = [conn for conn in self.members if bell.hears(conn.viewer, notification)]
            push(members, payload.decode(), self._kick)


class OrgRoom(Feed):
    """The staff inbox feeds of one organisation on this worker.

    Changes are coalesced: while one round of inbox rows is being queried,
    further changes collect in `_pending`, so a busy organisation costs one
    round of queries per change burst, never one per message per socket.
    What each staff member's frame says (their unread count, their newest
    visible message, state and status) is the domain's answer
    (`inbox.inbox_updates`); this room only carries it.
    """

    __slots__ = ("_dirty", "_flusher", "_pending")

    def __init__(self, channel: str, chat: Chat, broker: Broker, kick: Kick) -> None:
        super().__init__(channel, chat, broker, kick)
        # Changed conversation ids, in arrival order (a dict as ordered set).
        self._pending: dict[str, None] = {}
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        super().start()
        self._flusher = asyncio.create_task(self._flush_forever(), name=f"inbox {self.channel}")

    def stop(self) -> asyncio.Task[None] | None:
        """Also cancel the flusher, and let go of it (as `Room.stop` does of
        its task: the cancelled task's traceback holds this room)."""
        super().stop()
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
        return flusher

    def _payload(self, payload: bytes) -> None:
        event = decode_event(payload)
        if event is None:
            return
        about: Any = event
        if event.get("type") == EventType.NOTIFICATION:
            # The bell of a candidate message: one event per organisation,
            # forwarded as it is to every staff member's inbox page, and
            # the news that its conversation's row changed.
            push(list(self.members), payload.decode(), self._kick)
            about = event.get("notification")
        elif event.get("type") != EventType.INBOX_CHANGED:
            return
        conversation_id = about.get("conversation") if isinstance(about, dict) else None
        if not isinstance(conversation_id, str):
            return
        # Inbox frames are summaries, not a log: after an outage the next
        # change of each conversation brings its numbers up to date, and a
        # page reload lists everything, so missed ones are not replayed.
        self._pending[conversation_id] = None
        self._dirty.set()

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
                    push(members, frame, self._kick)
