"""In-process broker: the single-worker default and the honest test double.

It keeps the semantics of the Redis broker that matter to consumers (bounded
queues, Resync on overflow, subscriptions that end on disconnect), so code
tested against it behaves the same against Redis. A listener's callback runs
inside `publish` here, as it runs in the reader's dispatch with Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from chatserver.broker.base import (
    DEFAULT_QUEUE_SIZE,
    Delivery,
    Event,
    Listener,
    QueueSubscription,
    Receiver,
    Router,
    Subscription,
    offer_all,
)


class MemoryBroker:
    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self.publish_failures = 0
        self.overflows = 0
        self._channels: dict[str, set[Receiver]] = {}

    async def connect(self) -> None:
        """Nothing to connect to; present so both backends share one lifecycle."""

    async def disconnect(self) -> None:
        for subscriptions in self._channels.values():
            for subscription in subscriptions:
                subscription.close()
        self._channels.clear()

    async def publish(self, channel: str, payload: bytes) -> None:
        subscriptions = self._channels.get(channel)
        if subscriptions:
            self.overflows += offer_all(subscriptions, Delivery(channel, payload))

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        for channel, payload in items:
            await self.publish(channel, payload)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription(channel)

    def listen(self, channel: str, callback: Callable[[bytes], None]) -> Listener:
        listener = Listener(channel, callback, self)
        self._add(listener)
        return listener

    def route(
        self, channel: str, callback: Callable[[Event], None]
    ) -> AbstractAsyncContextManager[None]:
        return self._receiving(Router(channel, callback))

    def _add(self, receiver: Receiver) -> None:
        self._channels.setdefault(receiver.channel, set()).add(receiver)

    def drop(self, receiver: Receiver) -> None:
        """Forget a subscription or listener (closing it)."""
        receiver.close()
        receivers = self._channels.get(receiver.channel)
        if receivers is not None:
            receivers.discard(receiver)
            if not receivers:
                del self._channels[receiver.channel]

    @asynccontextmanager
    async def _subscription(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = QueueSubscription(channel, self.queue_size)
        async with self._receiving(subscription):
            yield subscription

    @asynccontextmanager
    async def _receiving(self, receiver: Receiver) -> AsyncIterator[None]:
        """`receiver` hears the channel while the context is open (live at
        once: nothing to confirm in memory)."""
        self._add(receiver)
        try:
            yield
        finally:
            self.drop(receiver)

    async def ping(self) -> bool:
        return True

    @property
    def healthy(self) -> bool:
        return True
