"""The broker contract: publish bytes on a logical channel, receive them elsewhere.

Live fan-out is best effort by design (SPEC section 3): the database is the
record, the broker only carries news of it. So a subscriber never blocks a
publisher. Each subscription holds a bounded queue; when it overflows, or when
the backend may have lost messages (a Redis outage), the subscription receives
a `Resync` and its consumer catches up from the database. Memory stays bounded
and nothing is lost silently.

A `Listener` is the other way to receive: no queue and no consumer task,
each payload handed to a synchronous callback from the broker's dispatch.
Feeds (a person's bell and disconnects, an organisation's inbox changes) are
summaries that need neither order nor catch-up, and a worker holds one per
connected person, so they take this cheaper way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, TypeAlias

log = logging.getLogger("chatserver.broker")

# Deliveries a subscription may hold before it is told to resync instead. A
# room sees a few events per second, so 1024 is minutes of backlog for a
# healthy consumer; only a stalled one ever reaches it.
DEFAULT_QUEUE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """One published payload, as it was published."""

    channel: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Resync:
    """Messages on this subscription's channel may have been missed.

    The consumer reloads what it needs from the database; deliveries that
    follow may repeat some of it, which consumers already de-duplicate by seq.
    """


RESYNC = Resync()

Event: TypeAlias = Delivery | Resync


class SubscriptionClosed(Exception):
    """The subscription ended: its context exited or the broker disconnected."""


class Subscription(Protocol):
    channel: str

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def get(self) -> Event: ...

    def qsize(self) -> int:
        """Events waiting to be taken; for metrics and tests."""
        ...

    def offer(self, event: Event) -> bool:
        """Queue an event without waiting (a consumer may queue a `Resync`
        for itself); True if the queue overflowed into a Resync."""
        ...

    def close(self) -> None:
        """End it from outside its context: `get` raises SubscriptionClosed.
        The broker releases the channel when the context exits."""
        ...


class Broker(Protocol):
    publish_failures: int
    overflows: int
    # Events a subscription holds before it is told to resync instead.
    queue_size: int

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None: ...

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None: ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]: ...

    def listen(self, channel: str, callback: Callable[[bytes], None]) -> Listener:
        """Hand every payload published on `channel` to `callback` until the
        listener is released. Returns at once: the channel is subscribed
        on the wire in the background, with everyone else's, and again after
        a reconnect; what is missed meanwhile is not replayed."""
        ...

    def route(
        self, channel: str, callback: Callable[[Event], None]
    ) -> AbstractAsyncContextManager[None]:
        """Hand every event of `channel`, `Resync`s included, to `callback`
        from the broker's dispatch, without a queue or a task, while the
        context is open. Entered as `subscribe` is: once the channel is
        live here (or, past the wait, with a Resync)."""
        ...

    async def ping(self) -> bool: ...

    @property
    def healthy(self) -> bool: ...


class QueueSubscription:
    """A subscription backed by a bounded queue, shared by every backend.

    `offer` never awaits, so a broker can hand an event to any number of
    subscriptions from its single dispatch loop without a slow consumer
    holding the others back.
    """

    __slots__ = ("_closed", "_items", "_maxsize", "_waiter", "channel")

    def __init__(self, channel: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a subscription queue needs room for at least one event")
        self.channel = channel
        self._maxsize = maxsize
        # An idle subscription (one per room, thousands per worker) holds
        # no queue and no asyncio.Event: its deque is made by the first
        # event, and the one consumer's future only while it waits.
        self._items: deque[Event] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def offer(self, event: Event) -> bool:
        """Queue an event; return True if the queue overflowed into a Resync."""
        if self._closed:
            return False
        items = self._items
        if items is None:
            items = self._items = deque()
        overflowed = False
        if isinstance(event, Resync):
            if items and isinstance(items[-1], Resync):
                return False
            if len(items) >= self._maxsize:
                items.clear()
        elif len(items) >= self._maxsize:
            # Everything queued, and this event, is in the database: one
            # Resync replaces them all.
            items.clear()
            event = RESYNC
            overflowed = True
        items.append(event)
        self._wake()
        return overflowed

    def close(self) -> None:
        """End the subscription; pending events are dropped, waiters wake up."""
        self._closed = True
        self._items = None
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        return len(self._items) if self._items is not None else 0

    async def get(self) -> Event:
        """Wait for the next event; raise SubscriptionClosed once it has ended."""
        while not self._items:
            if self._closed:
                raise SubscriptionClosed(self.channel)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def __aiter__(self) -> QueueSubscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None


class Router:
    """A subscription without a queue that also hears `Resync`: each event
    goes straight to a callback from the broker's dispatch loop (`route`).
    For a consumer that hands events on at once, such as a worker's
    organisation stream, which routes each payload to its rooms' queues:
    one task wake-up per payload instead of two. What the callback raises
    is logged here."""

    __slots__ = ("_callback", "channel")

    def __init__(self, channel: str, callback: Callable[[Event], None]) -> None:
        self.channel = channel
        self._callback: Callable[[Event], None] | None = callback

    def offer(self, event: Event) -> bool:
        callback = self._callback
        if callback is not None:
            try:
                callback(event)
            except Exception:
                log.exception("a router of %s failed on an event", self.channel)
        return False

    def close(self) -> None:
        self._callback = None


class Receiver(Protocol):
    """What a backend keeps per local subscriber of a channel: a
    `QueueSubscription` or a `Listener`."""

    channel: str

    def offer(self, event: Event) -> bool: ...

    def close(self) -> None: ...


class Receivers(Protocol):
    """Where a backend keeps its receivers: a listener leaves through it."""

    def drop(self, receiver: Receiver) -> None:
        """Forget `receiver` (closing it); the channel leaves the wire with
        its last receiver."""
        ...


class Listener:
    """A subscription without a queue: each payload goes straight to a
    callback, called from the broker's dispatch loop.

    The callback must not block or await (it queues frames, closes sockets);
    whatever it raises is logged here and never reaches the dispatch loop,
    so one bad payload or room cannot stop delivery to the others. A
    `Resync` is ignored: a listener is for summaries, whose next event
    brings the reader up to date."""

    __slots__ = ("_callback", "_owner", "channel")

    def __init__(self, channel: str, callback: Callable[[bytes], None], owner: Receivers) -> None:
        self.channel = channel
        self._callback: Callable[[bytes], None] | None = callback
        self._owner = owner

    def offer(self, event: Event) -> bool:
        callback = self._callback
        if callback is None or isinstance(event, Resync):
            return False
        try:
            callback(event.payload)
        except Exception:
            log.exception("a listener of %s failed on a payload", self.channel)
        return False

    def close(self) -> None:
        """Deliver nothing more (the broker disconnected, or `release`)."""
        self._callback = None

    @property
    def closed(self) -> bool:
        return self._callback is None

    def release(self) -> None:
        """Stop listening; the broker unsubscribes the channel once no one
        else on this process follows it. Idempotent, never awaits."""
        self._owner.drop(self)


def offer_all(receivers: Iterable[Receiver], event: Event) -> int:
    """Hand one event to every receiver; return how many overflowed.

    Over a copy: a listener's callback may release a listener of the same
    channel (a slow socket kicked leaves its rooms) while this runs."""
    return sum(receiver.offer(event) for receiver in tuple(receivers))
