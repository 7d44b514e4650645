"""One broker subscription per organisation on this worker, routed by topic.

Every event about a conversation is published once, on its organisation's
channel, behind its `Topic` (`chat/events.py`). A worker follows each
organisation it has local interest in once, and hands each payload to
whoever here wants it, reading only the topic:

- the conversation's room, by conversation id, through a queue of its own
  (`conversation_room.py`: rooms keep order, wait out gaps, catch up);
- taps, by application id (a candidate's bell) or for every conversation
  (the organisation's staff inbox feeds), called with the topic and the
  event's bytes (`feeds.py`).

So a message costs one publish however many feeds derive something from
it, and a worker decodes the topic once per payload however many rooms
and feeds it has (issue 10). The price: a worker with any interest in an
organisation receives all of its events, which a busy organisation's
inbox feeds needed anyway.

The stream receives through a broker `route`: the broker's dispatch hands
it each payload, and it routes at once, so a payload wakes its room's task
and nothing else. A `Resync` of the organisation's channel (a Redis
outage) reaches every room of it, and each catches up from the database;
taps ignore it, as feeds are summaries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from chatserver.broker.base import (
    DEFAULT_QUEUE_SIZE,
    RESYNC,
    Broker,
    Delivery,
    Event,
    QueueSubscription,
    Resync,
    Subscription,
)
from chatserver.chat import events
from chatserver.chat.events import Topic

log = logging.getLogger(__name__)

# A stream whose subscription failed tries again soon, then backs off to a
# pace that does not hammer a broker that is down.
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0

Heard = Callable[[Topic, bytes], None]


class Tap:
    """A callback for one organisation's events: those of one application
    (`key`), or all of them (`key` None). Called from the stream's task;
    must not block."""

    __slots__ = ("_stream", "callback", "key")

    def __init__(self, stream: _Stream, key: str | None, callback: Heard) -> None:
        self._stream: _Stream | None = stream
        self.key = key
        self.callback = callback

    def release(self) -> None:
        """Hear nothing more; idempotent."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.untap(self)


class _Stream:
    """One organisation's route, the task that holds it open, and its
    local followers."""

    __slots__ = (
        "_broker",
        "_idle",
        "_stop",
        "_task",
        "channel",
        "live",
        "org_id",
        "rooms",
        "taps",
    )

    def __init__(self, org_id: str, broker: Broker, idle: Callable[[_Stream], None]) -> None:
        self.org_id = org_id
        self.channel = events.org_channel(org_id)
        self._broker = broker
        self._idle = idle
        self.rooms: dict[str, set[QueueSubscription]] = {}
        # By application id (None: every event). Lists: an application
        # has one tap per worker (its candidate's person room), and a list
        # of one costs a third of a set's memory.
        self.taps: dict[str | None, list[Tap]] = {}
        # Set while the broker routes the channel here: a room's history,
        # read after this, misses nothing published meanwhile.
        self.live = asyncio.Event()
        # Set by `stop` too, so the task ends even if a library swallowed
        # its cancellation (as `Room.stop` closes its subscription).
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._run(), name=f"stream {self.channel}"
        )

    @property
    def idle(self) -> bool:
        return not self.rooms and not self.taps

    def untap(self, tap: Tap) -> None:
        taps = self.taps.get(tap.key)
        if taps is not None and tap in taps:
            taps.remove(tap)
            if not taps:
                del self.taps[tap.key]
        self._idle(self)

    def leave(self, conversation_id: str, subscription: QueueSubscription) -> None:
        subscription.close()
        rooms = self.rooms.get(conversation_id)
        if rooms is not None:
            rooms.discard(subscription)
            if not rooms:
                del self.rooms[conversation_id]
        self._idle(self)

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the task (which releases the broker subscription) and end
        every room's subscription; the task to wait for."""
        self._stop.set()
        for subscriptions in self.rooms.values():
            for subscription in subscriptions:
                subscription.close()
        self.rooms.clear()
        for taps in self.taps.values():
            for tap in taps:
                tap._stream = None
        self.taps.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def _run(self) -> None:
        """Hold the route open until `stop`. Once entered it stays: the
        broker re-subscribes it after a reconnect by itself (and sends the
        Resync). Only entering it can fail; that is tried again, and rooms
        wait for `live` meanwhile."""
        delay = RETRY_MIN_SECONDS
        while not self._stop.is_set():
            try:
                async with self._broker.route(self.channel, self._event):
                    self.live.set()
                    await self._stop.wait()
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("stream %s failed; subscribing again", self.channel)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _event(self, event: Event) -> None:
        if isinstance(event, Resync):
            self._resync()
        else:
            self._route(event.payload)

    def _resync(self) -> None:
        for subscriptions in list(self.rooms.values()):
            for subscription in tuple(subscriptions):
                subscription.offer(RESYNC)

    def _route(self, payload: bytes) -> None:
        try:
            about, body = events.open_envelope(self.org_id, payload)
        except ValueError:
            log.warning("dropping a malformed payload on %s", self.channel)
            return
        rooms = self.rooms.get(about.conversation_id)
        if rooms:
            delivery = Delivery(self.channel, body)
            for subscription in tuple(rooms):
                self._broker.overflows += subscription.offer(delivery)
        for key in (None, about.application_id):
            for tap in tuple(self.taps.get(key, ())):
                try:
                    tap.callback(about, body)
                except Exception:
                    log.exception("a tap of %s failed on a payload", self.channel)


class OrgStreams:
    """This worker's organisation streams, made on first interest and
    stopped with the last."""

    def __init__(self, broker: Broker, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._broker = broker
        self._queue_size = queue_size
        self._streams: dict[str, _Stream] = {}
        # Tasks of stopped streams, kept referenced until they end.
        self._stopping: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._streams)

    @asynccontextmanager
    async def subscribe(self, org_id: str, conversation_id: str) -> AsyncIterator[Subscription]:
        """A conversation's events, yielded once the organisation's channel
        is live here (so history read afterwards misses nothing)."""
        stream = self._stream(org_id)
        name = events.conversation_name(conversation_id)
        subscription = QueueSubscription(name, self._queue_size)
        stream.rooms.setdefault(conversation_id, set()).add(subscription)
        try:
            await stream.live.wait()
            yield subscription
        finally:
            stream.leave(conversation_id, subscription)

    def tap(self, org_id: str, key: str | None, callback: Heard) -> Tap:
        """Hear the organisation's events about application `key` (None: all)."""
        stream = self._stream(org_id)
        tap = Tap(stream, key, callback)
        stream.taps.setdefault(key, []).append(tap)
        return tap

    async def stop(self, wait_seconds: float) -> None:
        """Stop every stream (at shutdown), waiting at most `wait_seconds`."""
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            self._retire(stream)
        if self._stopping:
            await asyncio.wait(set(self._stopping), timeout=wait_seconds)

    def _stream(self, org_id: str) -> _Stream:
        stream = self._streams.get(org_id)
        if stream is None:
            stream = self._streams[org_id] = _Stream(org_id, self._broker, self._idle)
        return stream

    def _idle(self, stream: _Stream) -> None:
        if stream.idle and self._streams.get(stream.org_id) is stream:
            del self._streams[stream.org_id]
            self._retire(stream)

    def _retire(self, stream: _Stream) -> None:
        task = stream.stop()
        if task is not None and not task.done():
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
