"""Conversation rooms: every local subscriber of a conversation gets its
messages once, in seq order, without gaps (SPEC 3.2).

The room remembers the last seq it delivered, drops repeats, fills a gap
(seq > last + 1, e.g. two workers' publishes arriving out of order) from the
database before delivering, and on a `Resync` (a Redis outage, a queue
overflow) catches up from the database, paced by each member's outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from chatserver.broker.base import Subscription
from chatserver.chat import events, queries, views, wire
from chatserver.chat.events import EventType
from chatserver.chat.policy import ConversationFacts, Role
from chatserver.chat.service import Chat
from chatserver.ops import instruments
from chatserver.realtime.catchup import CatchUp
from chatserver.realtime.connection import Connection
from chatserver.realtime.room import Kick, Room, decode_event
from chatserver.realtime.streams import OrgStreams
from chatserver.store.contexts import ConversationContext, SendContext

log = logging.getLogger(__name__)

# Publishes from two workers can arrive out of seq order. A message that
# skips ahead waits this long for the missing ones before the room reads them
# from the database: commits and publishes of different workers are
# milliseconds apart, so a real loss is the only thing that waits it out.
REORDER_WAIT_SECONDS = 0.1
# Messages read per query when catching up (a gap, a Resync, a history
# replay): a long outage's backlog never loads at once.
PAGE = 200
# How long a catch-up waits for one member's outbox to drain below half
# before it treats the member as a client that does not read. A healthy
# reader drains it in milliseconds.
REPLAY_STALL_SECONDS = 5.0


class Member:
    """A connection in a conversation room. While its history is being sent,
    live frames wait in `buffer` (with their seq, None for other frames).
    Once live, `last` is the highest seq the connection has: the room may
    still deliver older seqs (a gap it fills after a member resubscribed
    with a later `after`), and those must not reach this connection again."""

    __slots__ = ("buffer", "last")

    def __init__(self) -> None:
        self.buffer: list[tuple[int | None, str]] | None = []
        self.last = 0

    def acknowledged(self, seq: int) -> None:
        """The connection's own message `seq` reached it in its ack. When
        it is the next seq the connection lacks, it now has it, and the
        room's fan-out skips it: one frame fewer per message sent. A seq
        further ahead (a message before it still on its way) or a member
        still replaying history gets its copy as usual: the live frames
        are what tell the client it has every seq up to here."""
        if self.buffer is None and seq == self.last + 1:
            self.last = seq


class ConversationRoom(Room):
    __slots__ = (
        "_buffer_limit",
        "_catch_up_with",
        "_held",
        "_streams",
        "_told",
        "context",
        "conversation_id",
        "last",
        "members",
    )

    def __init__(
        self,
        conversation_id: str,
        chat: Chat,
        streams: OrgStreams,
        kick: Kick,
        buffer_limit: int,
        catch_up: CatchUp,
    ) -> None:
        super().__init__(events.conversation_name(conversation_id), chat, kick)
        self._streams = streams
        self._catch_up_with = catch_up
        self.ready = asyncio.Event()
        self.conversation_id = conversation_id
        # The conversation as first read: which organisation's stream
        # carries it (that never changes), and what its events are about.
        self.context: SendContext | None = None
        self.members: dict[Connection, Member] = {}
        self.last = 0
        self._buffer_limit = buffer_limit
        # Messages that arrived ahead of a gap, by seq: (frame, created_at).
        self._held: dict[int, tuple[str, object]] = {}
        # The `conversation` frame of each role as last told (or as it was
        # when first read): a resync tells the members only a change.
        self._told: dict[str, str] = {}

    def join(self, conn: Connection) -> Member:
        member = Member()
        self.members[conn] = member
        return member

    async def _follow(self) -> AbstractAsyncContextManager[Subscription] | None:
        if self.context is None:
            ctx = await self._catch_up_with.context(self.conversation_id)
            if ctx is None:
                # No such conversation (yet): joiners go on to their access
                # check, which refuses them; the room looks again later.
                if self.ready is not None:
                    self.ready.set()
                return None
            self.context = ctx.for_sending()
            self._told = self._state_frames(views.facts(ctx))
            if self.ready is None or not self.ready.is_set():
                # Else joiners went live while the context could not be
                # read: the first catch-up starts from the beginning
                # (each member skips what it has).
                self.last = ctx.last_seq
        return self._streams.subscribe(self.context.org_id, self.conversation_id)

    async def _subscribed(self, first: bool) -> None:
        if first:
            # What was committed between the first read and the live
            # subscription (the shared read usually finds nothing): from
            # here on every message arrives live.
            await self._catch_up(None)
            self._release_held()
        else:
            await self._resync()

    async def _payload(self, payload: bytes) -> None:
        event = decode_event(payload)
        if event is None:
            return
        kind = event.get("type")
        if kind == EventType.MESSAGE:
            message = event.get("message")
            if not isinstance(message, dict):
                return
            seq = message.get("seq")
            if not isinstance(seq, int) or seq <= self.last:
                return
            if seq > self.last + 1:
                self._held[seq] = (payload.decode(), message.get("created_at"))
                if self._wait_until is None:
                    self._wait_until = asyncio.get_running_loop().time() + REORDER_WAIT_SECONDS
                return
            self._deliver(payload.decode(), seq)
            _observe_latency(message.get("created_at"))
            self._release_held()
        elif kind in (EventType.READ, EventType.DELETED):
            self._fan_out(payload.decode())
        elif kind == EventType.TYPING:
            who = event.get("who")
            if isinstance(who, dict):
                self._fan_out(payload.decode(), skip=(who.get("kind"), who.get("id")))
        elif kind == EventType.CONVERSATION_CHANGED:
            try:
                facts = views.changed_facts(event)
            except ValueError:
                log.warning("dropping a malformed conversation_changed event")
                return
            self._tell(self._state_frames(facts))

    def _release_held(self) -> None:
        """Deliver held messages that are next in line now."""
        while self.last + 1 in self._held:
            frame, created_at = self._held.pop(self.last + 1)
            self._deliver(frame, self.last + 1)
            _observe_latency(created_at)
        self._held = {seq: held for seq, held in self._held.items() if seq > self.last}
        if not self._held:
            self._wait_until = None

    async def _waited(self) -> None:
        """The gap before the held messages did not fill by itself: read it."""
        if self._held:
            await self._catch_up(max(self._held))
            self._release_held()

    async def _resync(self) -> None:
        """After a gap in the broker's stream (an outage, a resubscribe):
        the messages missed, then the state if it changed meanwhile (a
        resync repeats every few seconds while Redis is down, and the
        `conversation` frame is for changes)."""
        ctx = await self._catch_up(None)
        self._release_held()
        if ctx is not None:
            frames = self._state_frames(views.facts(ctx))
            if frames != self._told:
                self._tell(frames)

    async def _catch_up(self, upto: int | None) -> ConversationContext | None:
        """Deliver stored messages after `last` (up to `upto`, or all), a page
        at a time. The context comes from a query shared with every room
        catching up meanwhile; only a room that is behind reads pages, in
        one of a few slots (`realtime/catchup.py`)."""
        ctx = await self._catch_up_with.context(self.conversation_id)
        while ctx is not None:
            end = ctx.last_seq if upto is None else min(upto, ctx.last_seq)
            if end <= self.last:
                return ctx
            async with self._catch_up_with.pages:
                page = await queries.stored_between(
                    self.chat, self.conversation_id, self.last, min(end, self.last + PAGE)
                )
            if not page:
                return ctx
            for message in page:
                await self._deliver_paced(wire.message_frame(message), int(message["seq"]))
        return ctx

    def _deliver(self, frame: str, seq: int) -> None:
        self.last = seq
        self._fan_out(frame, seq)

    async def _deliver_paced(self, frame: str, seq: int) -> None:
        """Deliver a message read from the database, waiting for each live
        member's outbox to have room as history replay does: a catch-up of
        hundreds of messages (after a Redis outage) must not look like a
        slow client to the guard of `_push`. Only a member that does not
        drain its outbox within REPLAY_STALL_SECONDS is cut off."""
        self.last = seq
        live, overflow = self._targets(frame, seq, None)
        for conn in overflow:
            self._kick(conn)
        delivered = 0
        for conn in live:
            if await conn.outbox.put_within(frame, REPLAY_STALL_SECONDS):
                delivered += 1
            else:
                self._kick(conn)
        instruments.record_delivered(delivered)

    def _fan_out(
        self, frame: str, seq: int | None = None, skip: tuple[object, object] | None = None
    ) -> None:
        live, overflow = self._targets(frame, seq, skip)
        self._push(live, frame)
        for conn in overflow:
            self._kick(conn)

    def _targets(
        self, frame: str, seq: int | None, skip: tuple[object, object] | None
    ) -> tuple[list[Connection], list[Connection]]:
        """The live members a frame goes to now (each member's `last` moved
        to `seq`), and those whose history-replay buffer is full. Buffered
        members get the frame in their buffer here."""
        live: list[Connection] = []
        overflow: list[Connection] = []
        for conn, member in self.members.items():
            if skip is not None and conn.is_person(*skip):
                continue
            if member.buffer is None:
                if seq is not None:
                    if seq <= member.last:
                        continue
                    member.last = seq
                live.append(conn)
            elif len(member.buffer) < self._buffer_limit:
                member.buffer.append((seq, frame))
            else:
                overflow.append(conn)
        return live, overflow

    def joined_with(self, facts: ConversationFacts) -> None:
        """A member was told the state as `facts` have it in its `subscribed`
        frame: if the room last told another (a change whose event is still
        on its way, or lost in an outage), members now disagree, and the
        next resync must tell everyone rather than compare."""
        if self._told and self._state_frames(facts) != self._told:
            self._told = {}

    def _state_frames(self, facts: ConversationFacts) -> dict[str, str]:
        """Each role's own `conversation` frame: can_send depends on who asks."""
        return {
            role.value: wire.encode(views.conversation_state(self.conversation_id, facts, role))
            for role in Role
        }

    def _tell(self, frames: dict[str, str]) -> None:
        """Each role its `conversation` frame (`_state_frames`), remembered as told."""
        self._told = frames
        for role, frame in frames.items():
            self._fan_out_role(frame, role)

    def _fan_out_role(self, frame: str, role: str) -> None:
        buffered = [m for c, m in self.members.items() if c.role == role and m.buffer is not None]
        for member in buffered:
            assert member.buffer is not None
            member.buffer.append((None, frame))
        self._push(
            [c for c, m in self.members.items() if c.role == role and m.buffer is None], frame
        )


def _observe_latency(created: object) -> None:
    if isinstance(created, str):
        with contextlib.suppress(ValueError):
            instruments.record_latency(time.time() - datetime.fromisoformat(created).timestamp())
