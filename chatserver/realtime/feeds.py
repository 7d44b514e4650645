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

    __slots__ = ("_bells", "_kick", "_listener", "_streams", "channel", "members")

    def __init__(self, channel: str, broker: Broker, streams: OrgStreams, kick: Kick) -> None:
        self.channel = channel
        self._kick = kick
        self._streams = streams
        self.members: set[Connection] = set()
        # Per (organisation, application) of the members: its tap and how
        # many members hold it. None until a member holds one (staff never).
        self._bells: dict[tuple[str, str], _Bell] | None = None
        self._listener: Listener | None = broker.listen(channel, self._receive)

    def join(self, conn: Connection) -> None:
        self.members.add(conn)
        for held in conn.viewer.held_applications():
            if self._bells is None:
                self._bells = {}
            bell_of = self._bells.get(held)
            if bell_of is None:
                org_id, application_id = held
                tap = self._streams.tap(org_id, application_id, self._heard)
                bell_of = self._bells[held] = _Bell(tap)
            bell_of.holders += 1

    def leave(self, conn: Connection) -> None:
        if conn not in self.members:
            return
        self.members.discard(conn)
        bells = self._bells
        if bells is None:
            return
        for held in conn.viewer.held_applications():
            bell_of = bells.get(held)
            if bell_of is None:
                continue
            bell_of.holders -= 1
            if bell_of.holders <= 0:
                del bells[held]
                bell_of.tap.release()

    def stop(self) -> None:
        """Release the listener and the taps (the broker unsubscribes the
        channel when no one else here follows it)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.release()
        bells, self._bells = self._bells, None
        for bell_of in (bells or {}).values():
            bell_of.tap.release()

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


class _Bell:
    """A person room's tap of one application's events, and how many of
    its members hold that application."""

    __slots__ = ("holders", "tap")

    def __init__(self, tap: Tap) -> None:
        self.tap = tap
        self.holders = 0


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
        if about.type is EventType.TYPING:
            return
        if about.type is EventType.READ and about.by != Role.STAFF.value:
            # A candidate's read changes no staff member's row.
            return
        later(lambda: self._changed(about, body), self.channel)

    def _changed(self, about: Topic, body: bytes) -> None:
        # Inbox frames are summaries, not a log: after an outage the next
        # change of each conversation brings its numbers up to date, and a
        # page reload lists everything, so missed ones are not replayed.
        # (A repeat's row too: rows are idempotent, and the first publish
        # may have been lost with the worker that committed it.)
        self._pending[about.conversation_id] = None
        self._dirty.set()
        candidates = about.type is EventType.MESSAGE and about.by == Role.CANDIDATE.value
        if candidates and not about.again:
            note = bell_frame(about, body, Role.STAFF)
            if note is not None:
                push(list(self.members), wire.encode(note), self._kick)

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
                        row.conversation,
                        row.unread,
                        row.last_message,
                        row.state,
                        row.status,
                        row.candidate,
                    )
                    push(members, frame, self._kick)
