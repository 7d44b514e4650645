"""The worker's real-time core: connections, their rooms, and the handoff
from history to live messages.

One room per conversation with local members, holding its share of its
organisation's stream (`streams.py`: one broker subscription per
organisation) and the task that reads it; one feed (`feeds.py`) per
organisation inbox feed and per person with a local socket, each without a
task. `subscribe` joins the room *before* reading history, buffers
what arrives live while the history is sent, then drops from the buffer what
the history already covered: each socket sees every message once, in seq
order (SPEC 3.2).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from chatserver.broker.base import Broker
from chatserver.chat import events, ids, queries, views, wire
from chatserver.chat.identity import Viewer
from chatserver.chat.presence import Presence, presence_from_settings
from chatserver.chat.ratelimit import TokenBucket
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid, unavailable
from chatserver.ops import instruments
from chatserver.ops.stats import StatsReporter, stats_store_from_settings
from chatserver.realtime.catchup import CatchUp
from chatserver.realtime.connection import Connection
from chatserver.realtime.conversation_room import ConversationRoom, Member
from chatserver.realtime.feeds import OrgRoom, PersonRoom
from chatserver.realtime.streams import OrgStreams
from chatserver.realtime.tails import TailCheck
from chatserver.settings import Settings

log = logging.getLogger(__name__)

# WebSocket close codes (RFC 6455): 1008 policy violation, 1013 try again later.
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013
# A page shows one conversation and the inbox uses the org feed, so a socket
# following more than this many conversations is a runaway client.
MAX_SUBSCRIPTIONS = 100
# A new room waits for its broker subscription and one database read; past
# this the client is better served by `unavailable` and its own retry.
READY_TIMEOUT_SECONDS = 10.0
# How long shutdown waits for the rooms' tasks. A room ends within one loop
# iteration of `stop`; this bound only guards the worker's graceful timeout
# against a library that never returns.
ROOM_STOP_SECONDS = 5.0
# What a client over the connection cap is told to wait before reconnecting.
CAP_RETRY_MS = 5000


class Hub:
    def __init__(
        self,
        chat: Chat,
        broker: Broker,
        settings: Settings,
        presence: Presence | None = None,
    ) -> None:
        self.chat = chat
        self.broker = broker
        self.settings = settings
        self.presence = presence or presence_from_settings(settings)
        self.stats = stats_store_from_settings(settings)
        self.reporter = StatsReporter(self.stats)
        self.streams = OrgStreams(broker, queue_size=broker.queue_size)
        self._rooms: dict[str, ConversationRoom] = {}
        self._orgs: dict[str, OrgRoom] = {}
        self._people: dict[str, PersonRoom] = {}
        self._per_person: Counter[tuple[str, str]] = Counter()
        self._typing: dict[tuple[str, str, str], float] = {}
        self._typing_swept = 0.0
        self._stopping: set[asyncio.Task[None]] = set()
        self.catch_up = CatchUp(chat.db)
        self._tail_check = TailCheck(chat.db, lambda: self._rooms)

    async def start(self) -> None:
        await self.presence.start()
        self.reporter.start()
        if self.settings.production:
            # With one embedded process a publish cannot be lost without
            # its subscribers going too.
            self._tail_check.start()

    async def stop(self) -> None:
        await self._tail_check.stop(ROOM_STOP_SECONDS)
        rooms: list[ConversationRoom | OrgRoom] = [*self._rooms.values(), *self._orgs.values()]
        for person in self._people.values():
            person.stop()
        self._rooms.clear()
        self._orgs.clear()
        self._people.clear()
        tasks = [task for room in rooms if (task := room.stop()) is not None]
        for task in self._stopping:
            # Cancel again: a retired room that swallowed its first cancel
            # (its subscription is closed too, so it ends either way).
            task.cancel()
        tasks.extend(self._stopping)
        await self.reporter.stop()
        await self.streams.stop(ROOM_STOP_SECONDS)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=ROOM_STOP_SECONDS)
            if pending:
                # Never hang the worker's shutdown on one: the process exits
                # and Redis drops its subscriptions with the connection.
                log.error("%d room tasks did not stop in time", len(pending))
        await self.presence.stop()
        await self.stats.close()
        instruments.ROOMS.set(0)

    # -- connections -------------------------------------------------------

    async def connect(self, viewer: Viewer) -> Connection:
        """A new socket for `viewer`, or `rate_limited` past the per-user cap
        (counted across workers, `chat/limits.py`)."""
        person = (viewer.kind.value, viewer.id)
        ticket = await self.chat.limits.claim(*person)
        if ticket is None:
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                f"At most {self.settings.max_connections_per_user} connections per user.",
                retry_after_ms=CAP_RETRY_MS,
            )
        self._per_person[person] += 1
        frames = TokenBucket(
            self.settings.frame_rate,
            self.settings.frame_burst,
            asyncio.get_running_loop().time(),
        )
        conn = Connection(viewer, self.settings.ws_send_queue, frames, ticket)
        instruments.connection_opened(conn.role)
        channel = events.person_channel(*person)
        room = self._people.get(channel)
        if room is None:
            room = self._people[channel] = PersonRoom(channel, self.broker, self.streams, self.kick)
        room.join(conn)
        conn.person_channel = channel
        self._count_rooms()
        return conn

    def disconnect(self, conn: Connection) -> None:
        """The socket is gone: leave every room. Call exactly once per `connect`."""
        self._leave_all(conn)
        conn.outbox.close()
        person = (conn.role, conn.viewer.id)
        self.chat.limits.release(*person, conn.ticket)
        self._per_person[person] -= 1
        if self._per_person[person] <= 0:
            del self._per_person[person]
        instruments.connection_closed(conn.role)

    def kick(self, conn: Connection) -> None:
        """Fan-out found the client too slow: cut it off without waiting for it."""
        if conn.close_code is None:
            instruments.record_slow_disconnect()
        conn.cut_off(CLOSE_TRY_LATER)
        self._leave_all(conn)

    def _leave_all(self, conn: Connection) -> None:
        for conversation_id in list(conn.conversations):
            self.unsubscribe(conn, conversation_id)
        if conn.inbox_channel is not None:
            org = self._orgs.get(conn.inbox_channel)
            conn.inbox_channel = None
            if org is not None:
                org.members.discard(conn)
                if not org.members:
                    del self._orgs[org.channel]
                    self._retire(org.stop())
        if conn.person_channel is not None:
            person = self._people.get(conn.person_channel)
            conn.person_channel = None
            if person is not None:
                person.leave(conn)
                if not person.members:
                    del self._people[person.channel]
                    person.stop()
                    self._count_rooms()

    def _retire(self, task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.done():
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        self._count_rooms()

    def _count_rooms(self) -> None:
        instruments.ROOMS.set(len(self._rooms) + len(self._orgs) + len(self._people))

    def admit(self, conn: Connection) -> None:
        """Spend one of the socket's frame tokens, or raise `rate_limited`
        so that the frame is answered and not processed."""
        wait_ms = conn.frames.take(asyncio.get_running_loop().time())
        if wait_ms:
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                "Too many frames on this connection; wait a moment.",
                retry_after_ms=wait_ms,
            )

    # -- conversations -----------------------------------------------------

    async def subscribe(self, conn: Connection, conversation_id: str, after: int) -> None:
        """Answer `subscribed`, replay history after `after`, then go live.

        The socket joins the room first (so nothing published meanwhile is
        missed) and its access is checked by the one read that opens the
        replay (`Chat.openings`: one transaction per batch of subscribes).
        Until that check passed the member only buffers, and a refused one
        leaves without a trace (no presence, no subscription of the socket's)."""
        if conversation_id in conn.conversations:
            self.unsubscribe(conn, conversation_id)
        if len(conn.conversations) >= MAX_SUBSCRIPTIONS:
            raise ChatError(
                ErrorCode.TOO_LARGE, f"At most {MAX_SUBSCRIPTIONS} conversations per connection."
            )
        # A malformed id never makes a room (nor a broker subscription).
        ids.our_id(conversation_id)
        room = self._rooms.get(conversation_id)
        if room is None:
            room = ConversationRoom(
                conversation_id,
                self.chat,
                self.streams,
                self.kick,
                self.settings.ws_send_queue,
                self.catch_up,
            )
            self._rooms[conversation_id] = room
            room.start()
            self._count_rooms()
        member = room.join(conn)
        try:
            await self._replay(conn, room, member, after)
        except BaseException:
            if room.members.get(conn) is member:
                self._leave_room(room, conn)
            raise
        conn.conversations.add(conversation_id)
        self.presence.enter(conversation_id, conn.role, conn.viewer.id)

    async def _replay(
        self, conn: Connection, room: ConversationRoom, member: Member, after: int
    ) -> None:
        assert room.ready is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await room.ready.wait()
        except TimeoutError:
            raise unavailable() from None
        viewer = conn.viewer
        conversation_id = room.conversation_id
        ctx, page = await self.chat.openings.opening(viewer, conversation_id, after)
        facts = views.facts(ctx)
        room.joined_with(facts)
        state = views.conversation_state(ctx.id, facts, viewer.kind)
        await conn.outbox.put(
            wire.subscribed_frame(conversation_id, ctx.last_seq, state["state"], state["can_send"])
        )
        # A client that claims more than was ever stored (stale state, a
        # restored database) gets every message from here on, not only
        # those past its claim: its own duplicates it drops by seq.
        high = min(after, ctx.last_seq)
        while True:
            for message in page:
                await conn.outbox.put(wire.message_frame(message))
                high = int(message["seq"])
            if len(page) < queries.HISTORY_MAX:
                break
            page = await queries.history(
                self.chat, viewer, conversation_id, after=high, limit=queries.HISTORY_MAX
            )
        # Hand over to live delivery: what arrived meanwhile, minus what the
        # history covered. The last emptiness check and the switch happen
        # without an await in between, so no frame can slip past.
        while member.buffer:
            pending, member.buffer = member.buffer, []
            for seq, frame in pending:
                if seq is None or seq > high:
                    await conn.outbox.put(frame)
                    high = seq if seq is not None else high
        member.last = high
        member.buffer = None

    def acknowledged(self, conn: Connection, conversation_id: str, seq: int) -> None:
        """The socket was sent the ack of its message `seq`: the room need
        not send it the same message again (`Member.acknowledged`)."""
        room = self._rooms.get(conversation_id)
        member = room.members.get(conn) if room is not None else None
        if member is not None:
            member.acknowledged(seq)

    def unsubscribe(self, conn: Connection, conversation_id: str) -> None:
        if conversation_id not in conn.conversations:
            return
        conn.conversations.discard(conversation_id)
        self.presence.leave(conversation_id, conn.role, conn.viewer.id)
        # A member keeps its room open, so the room under this id is the
        # one the socket joined (unless the hub stopped and dropped them all).
        room = self._rooms.get(conversation_id)
        if room is not None:
            self._leave_room(room, conn)

    def _leave_room(self, room: ConversationRoom, conn: Connection) -> None:
        room.members.pop(conn, None)
        if not room.members and self._rooms.get(room.conversation_id) is room:
            del self._rooms[room.conversation_id]
            self._retire(room.stop())

    async def typing(self, conn: Connection, conversation_id: str) -> None:
        """Tell the conversation's other subscribers, at most once per interval."""
        if conversation_id not in conn.conversations:
            raise invalid("Subscribe to the conversation before sending typing.")
        now = asyncio.get_running_loop().time()
        interval = self.settings.typing_interval_seconds
        key = (conversation_id, conn.role, conn.viewer.id)
        if now - self._typing.get(key, now - interval) < interval:
            return
        self._typing[key] = now
        if now - self._typing_swept > interval:
            self._typing_swept = now
            self._typing = {k: t for k, t in self._typing.items() if now - t < interval}
        room = self._rooms.get(conversation_id)
        if room is None or room.context is None:
            return
        frame = events.typing_event(conversation_id, conn.viewer.person())
        try:
            await self.chat.events.publish([(room.context, frame)])
        except Exception as exc:
            # Typing is ephemeral: losing one to a broker outage is harmless.
            log.debug("typing not published: %s", exc)

    # -- inbox feed --------------------------------------------------------

    def follow_inbox(self, conn: Connection) -> None:
        if not conn.viewer.is_staff or conn.viewer.org_id is None:
            raise ChatError(ErrorCode.FORBIDDEN, "Only staff have an inbox feed.")
        if conn.inbox_channel is not None:
            return
        org_id = conn.viewer.org_id
        channel = events.org_channel(org_id)
        room = self._orgs.get(channel)
        if room is None:
            room = self._orgs[channel] = OrgRoom(
                org_id, channel, self.chat, self.streams, self.kick
            )
            self._count_rooms()
        room.members.add(conn)
        conn.inbox_channel = channel

    def local_connections(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for (role, _), count in self._per_person.items():
            counts[role] += count
        return dict(counts)

    @property
    def room_count(self) -> int:
        return len(self._rooms)
