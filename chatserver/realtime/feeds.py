"""Feeds: rooms that carry summaries, not a log.

A person's room brings their sockets the `disconnect` that ends them and,
for a candidate, the bell of their applications' conversations; an
organisation's room brings its staff inbox pages their rows' changes and
the staff bell. Both bells and the rows are derived here from the
conversations' own events (`streams.py` taps), never published apart.
Neither replays what it missed: the page fetches the numbers when it loads
and the next change brings them up to date.

So a feed needs no order, no waits and no catch-up: each payload is
handled by a synchronous callback, with no task, coroutine or queue per
room. A worker holds one person room per connected person, thousands of
idle ones; a conversation room (`conversation_room.py`) keeps its task,
which order and gap waits need.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import orjson

from chatserver.broker.base import Broker, Listener
from chatserver.chat import bell, inbox, wire
from chatserver.chat.events import EventType, Topic
from chatserver.chat.policy import Role
from chatserver.chat.service import Chat
from chatserver.json_types import JSON
from chatserver.realtime import revocation
from chatserver.realtime.connection import Connection
from chatserver.realtime.room import Kick, decode_event, push
from chatserver.realtime.streams import OrgStreams, Tap

log = logging.getLogger(__name__)


def later(handle: Callable[[], None], what: str) -> None:
    """Run `handle` one loop step later, as a task woken by this dispatch
    would: a conversation room woken by the same payload (a message) so
    pushes its frame before the feed's (the message's bell). What it
    raises is logged."""

    def run() -> None:
        try:
            handle()
        except Exception:
            log.exception("feed %s failed on a payload", what)

    asyncio.get_running_loop().call_soon(run)


def bell_frame(about: Topic, body: bytes, recipient: Role) -> JSON | None:
    """The `notification` frame that a message event rings for `recipient`
    (None if the event is not a message)."""
    event = orjson.loads(body)
    message = event.get("message") if isinstance(event, dict) else None
    if not isinstance(message, dict):
        return None
    return bell.frame(message, recipient, about.job_title, about.application_id)


class PersonRoom:
    """One person's sockets on this worker: the `disconnect` that ends them
    (`realtime/revocation.py`) on the person's channel, and for a
    candidate the bell: a staff message in a conversation of one of their
    sockets' applications, heard on its organisation's stream.

    Slotted and taskless: all it holds while idle is its members, the
    listener and a tap per application."""

    __slots__ = ("_bells", "_held", "_kick", "_listener", "_streams", "channel", "members")

    def __init__(self, channel: str, broker: Broker, streams: OrgStreams, kick: Kick) -> None:
        self.channel = channel
        self._kick = kick
        self._streams = streams
        self.members: set[Connection] = set()
        # (organisation, application) of each member, counted, and its tap.
        self._held: Counter[tuple[str, str]] = Counter()
        self._bells: dict[tuple[str, str], Tap] = {}
        self._listener: Listener | None = broker.listen(channel, self._receive)

    def join(self, conn: Connection) -> None:
        self.members.add(conn)
        for held in conn.viewer.held_applications():
            self._held[held] += 1
            if held not in self._bells:
                org_id, application_id = held
                self._bells[held] = self._streams.tap(org_id, application_id, self._heard)

    def leave(self, conn: Connection) -> None:
        if conn not in self.members:
            return
        self.members.discard(conn)
        for held in conn.viewer.held_applications():
            self._held[held] -= 1
            if self._held[held] <= 0:
                del self._held[held]
                tap = self._bells.pop(held, None)
                if tap is not None:
                    tap.release()

    def stop(self) -> None:
        """Release the listener and the taps (the broker unsubscribes the
        channel when no one else here follows it)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.release()
        for tap in self._bells.values():
            tap.release()
        self._bells.clear()
        self._held.clear()

    def _receive(self, payload: bytes) -> None:
        later(lambda: self._disconnect(payload), self.channel)

    def _disconnect(self, payload: bytes) -> None:
        event = decode_event(payload)
        if event is not None:
            revocation.disconnect(self.members, event)

    def _heard(self, about: Topic, body: bytes) -> None:
        if about.type is EventType.MESSAGE and about.by == Role.STAFF.value and not about.again:
            later(lambda: self._ring(about, body), self.channel)

    def _ring(self, about: Topic, body: bytes) -> None:
        note = bell_frame(about, body, Role.CANDIDATE)
        if note is None:
            return
        members = [c for c in self.members if bell.hears(c.viewer, note["notification"])]
        push(members, wire.encode(note), self._kick)


class OrgRoom:
    """The staff inbox feeds of one organisation on this worker.

    Changes are coalesced: while one round of inbox rows is being queried,
    further changes collect in `_pending`, so a busy organisation costs one
    round of queries per change burst, never one per message per socket.
    What each staff member's frame says (their unread count, their newest
    visible message, state and status) is the domain's answer
    (`inbox.inbox_updates`); this room only carries it. A candidate's
    message also rings every member's bell.
    """

    __slots__ = ("_dirty", "_flusher", "_kick", "_pending", "_tap", "channel", "chat", "members")

    def __init__(
        self, org_id: str, channel: str, chat: Chat, streams: OrgStreams, kick: Kick
    ) -> None:
        self.channel = channel
        self.chat = chat
        self._kick = kick
        self.members: set[Connection] = set()
        # Changed conversation ids, in arrival order (a dict as ordered set).
        self._pending: dict[str, None] = {}
        self._dirty = asyncio.Event()
        self._tap: Tap | None = streams.tap(org_id, None, self._heard)
        self._flusher: asyncio.Task[None] | None = asyncio.create_task(
            self._flush_forever(), name=f"inbox {channel}"
        )

    def stop(self) -> asyncio.Task[None] | None:
        """Release the tap and cancel the flusher, letting go of it (as
        `Room.stop` does of its task: the cancelled task's traceback holds
        this room); the task to wait for."""
        tap, self._tap = self._tap, None
        if tap is not None:
            tap.release()
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
        return flusher

    def _heard(self, about: Topic, body: bytes) -> None:
        if about.type is EventType.TYPING or about.again:
            return
        if about.type is EventType.READ and about.by != Role.STAFF.value:
            # A candidate's read changes no staff member's row.
            return
        later(lambda: self._changed(about, body), self.channel)

    def _changed(self, about: Topic, body: bytes) -> None:
        if about.type is EventType.MESSAGE and about.by == Role.CANDIDATE.value:
            note = bell_frame(about, body, Role.STAFF)
            if note is not None:
                push(list(self.members), wire.encode(note), self._kick)
        # Inbox frames are summaries, not a log: after an outage the next
        # change of each conversation brings its numbers up to date, and a
        # page reload lists everything, so missed ones are not replayed.
        self._pending[about.conversation_id] = None
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
