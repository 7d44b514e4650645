"""This process's subscribers, by channel, and when a new one may proceed.

Both Redis backends keep, per logical channel, the local subscribers
(queues, and listeners that have none) and whether Redis has confirmed the
channel. A queue subscriber is let through once Redis routes the channel
here, so history read afterwards cannot miss a message published in
between (SPEC section 5, subscribe); a listener has no history to read and
does not wait. A channel that may have missed messages resyncs its
subscribers when Redis confirms it again (SPEC section 3; listeners ignore
it). The registry keeps that bookkeeping once for both backends; each says
what subscribing and unsubscribing mean on its wire through the hooks it is
built with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chatserver.broker.base import (
    RESYNC,
    Delivery,
    Event,
    Listener,
    QueueSubscription,
    Receiver,
    Router,
    Subscription,
    offer_all,
)
from chatserver.waiters import Waiters


class LocalChannel:
    """Local subscribers of one channel and its state on the wire.

    A worker holds one per followed conversation and per connected person,
    thousands: waiting subscribers get a future each, made only while they
    wait, rather than an asyncio.Event (and its deque) per channel."""

    __slots__ = ("_waiters", "resync_on_confirm", "settled", "subscriptions")

    def __init__(self) -> None:
        # Queue subscriptions and listeners alike.
        self.subscriptions: set[Receiver] = set()
        # True once Redis confirms the subscription. Until then a new
        # subscriber waits; losing the connection lets waiters proceed (a
        # Resync follows on the next confirmation) and unsettles it again.
        self.settled = False
        self._waiters = Waiters()
        # The subscription may have missed messages: Resync on confirmation.
        self.resync_on_confirm = False

    def confirm(self) -> None:
        """Redis routes the channel here (again)."""
        self.settled = True
        self._waiters.wake_all()
        if self.resync_on_confirm:
            self.resync_on_confirm = False
            self.resync()

    def release(self) -> None:
        """Let waiting subscribers proceed; the Resync comes on confirmation."""
        self.settled = False
        self._waiters.wake_all()

    async def wait_settled(self) -> None:
        """Wait for `confirm` or `release`."""
        await self._waiters.wait()

    def resync(self) -> None:
        offer_all(self.subscriptions, RESYNC)


ChannelT = TypeVar("ChannelT", bound=LocalChannel)


@dataclass(eq=False)
class ChannelRegistry(Generic[ChannelT]):
    """The channels with local subscribers, and the subscribe context.

    `opened` puts a channel's first subscriber on the wire, `closed` takes
    the channel off when its last one leaves; `may_wait` says whether a
    confirmation can come at all (else the channel resyncs once it does),
    `unconfirmed_warning` is logged with the channel when it does not come
    in time.
    """

    new_channel: Callable[[], ChannelT]
    opened: Callable[[str, ChannelT], None]
    may_wait: Callable[[ChannelT], bool]
    closed: Callable[[str, ChannelT], None]
    logger: logging.Logger
    unconfirmed_warning: str
    by_name: dict[str, ChannelT] = field(default_factory=dict, init=False)

    def get(self, channel: str) -> ChannelT | None:
        return self.by_name.get(channel)

    def deliver(self, channel: str, payload: bytes) -> int:
        """Hand a message to the channel's subscribers; return the overflows."""
        state = self.by_name.get(channel)
        if state is None:
            return 0
        return offer_all(state.subscriptions, Delivery(channel, payload))

    def close_all(self) -> None:
        """End every open subscription (the broker disconnects)."""
        for state in self.by_name.values():
            for subscription in state.subscriptions:
                subscription.close()
        self.by_name.clear()

    def add(self, receiver: Receiver) -> ChannelT:
        """Follow the receiver's channel; its first receiver puts it on the wire."""
        channel = receiver.channel
        state = self.by_name.get(channel)
        if state is None:
            state = self.by_name[channel] = self.new_channel()
            self.opened(channel, state)
        state.subscriptions.add(receiver)
        return state

    def drop(self, receiver: Receiver) -> None:
        """Close and forget a receiver; its channel's last one takes it off
        the wire. Nothing to do for one already gone (`close_all`)."""
        receiver.close()
        channel = receiver.channel
        state = self.by_name.get(channel)
        if state is None or receiver not in state.subscriptions:
            return
        state.subscriptions.discard(receiver)
        if not state.subscriptions:
            del self.by_name[channel]
            self.closed(channel, state)

    def listen(self, channel: str, callback: Callable[[bytes], None]) -> Listener:
        """A listener, without waiting for Redis to confirm the channel: a
        feed has no history to read after it."""
        listener = Listener(channel, callback, self)
        self.add(listener)
        return listener

    @asynccontextmanager
    async def subscription(
        self, channel: str, *, queue_size: int, confirm_within: float
    ) -> AsyncIterator[Subscription]:
        """Yield once Redis confirms the channel (or `confirm_within` seconds
        pass: the subscription then starts with a Resync)."""
        subscription = QueueSubscription(channel, queue_size)
        async with self._receiving(subscription, confirm_within):
            yield subscription

    @asynccontextmanager
    async def routing(
        self, channel: str, callback: Callable[[Event], None], *, confirm_within: float
    ) -> AsyncIterator[None]:
        """A `Router` for `callback`, entered as `subscription` is."""
        async with self._receiving(Router(channel, callback), confirm_within):
            yield

    @asynccontextmanager
    async def _receiving(self, receiver: Receiver, confirm_within: float) -> AsyncIterator[None]:
        state = self.add(receiver)
        try:
            if not state.settled and self.may_wait(state):
                try:
                    async with asyncio.timeout(confirm_within):
                        await state.wait_settled()
                except TimeoutError:
                    self.logger.warning(self.unconfirmed_warning, receiver.channel)
                    receiver.offer(RESYNC)
                    # Events published until the confirmation comes may be
                    # missed: catch up again then.
                    state.resync_on_confirm = True
            yield
        finally:
            self.drop(receiver)
