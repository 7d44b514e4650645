"""What the two Redis brokers have in common beyond their wire: settings,
counters, and the Broker calls they answer the same way.

`RedisBroker` (one server) and `ClusterBroker` (shards) take the same
settings, keep the same counters, publish through a `Publisher` and
subscribe through a `ChannelRegistry`; only what those mean on the wire
differs. This base holds the settings and the calls once; a backend
supplies the hooks (which channel state, what subscribing and
unsubscribing send, what a failed publish costs) and its own lifecycle.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Generic, Literal, TypedDict

from chatserver.broker import timing
from chatserver.broker.base import DEFAULT_QUEUE_SIZE, Event, Listener, Subscription
from chatserver.broker.channels import ChannelRegistry, ChannelT
from chatserver.broker.clients import KEY_ERRORS
from chatserver.broker.publisher import Publisher


class Options(TypedDict, total=False):
    """The keyword settings of `RedisBackend`, for a backend to pass on
    (mypy checks them against the signature)."""

    prefix: str
    queue_size: int
    socket_timeout: float
    health_check_interval: float
    reconnect_min: float
    reconnect_max: float


class RedisBackend(Generic[ChannelT]):
    """A Redis broker but for its wire and its lifecycle."""

    # Set by each backend: its name in log messages, its logger, its
    # publish command and the warning for a subscription not confirmed.
    backend: ClassVar[str]
    log: ClassVar[logging.Logger]
    publish_command: ClassVar[Literal["publish", "spublish"]]
    unconfirmed_warning: ClassVar[str]

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "chat:",
        queue_size: int = DEFAULT_QUEUE_SIZE,
        socket_timeout: float = timing.DEFAULT_SOCKET_TIMEOUT,
        health_check_interval: float = timing.DEFAULT_HEALTH_CHECK_INTERVAL,
        reconnect_min: float = timing.DEFAULT_RECONNECT_MIN,
        reconnect_max: float = timing.DEFAULT_RECONNECT_MAX,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.queue_size = queue_size
        self.socket_timeout = socket_timeout
        self.health_check_interval = health_check_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.publish_failures = 0
        self.overflows = 0
        self._channels: ChannelRegistry[ChannelT] = ChannelRegistry(
            self._new_channel,
            opened=self._opened,
            may_wait=self._may_wait,
            closed=self._closed,
            logger=self.log,
            unconfirmed_warning=self.unconfirmed_warning,
        )
        self._publisher = Publisher(
            self._connected_client,
            command=self.publish_command,
            wire=self.wire,
            failed=self._publish_lost,
            backend=self.backend,
            logger=self.log,
            timeout=socket_timeout,
        )

    # -- the Broker calls answered alike ----------------------------------

    async def ping(self) -> bool:
        try:
            return await self._ping()
        except KEY_ERRORS:
            return False

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._publisher.publish(channel, payload)

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish a batch: one round trip per server involved, each
        channel's messages in order."""
        await self._publisher.publish_many(items)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """Yields once Redis routes the channel here, so history read afterwards
        cannot miss a message published in between (SPEC section 5, subscribe)."""
        return self._channels.subscription(
            channel, queue_size=self.queue_size, confirm_within=self.socket_timeout
        )

    def listen(self, channel: str, callback: Callable[[bytes], None]) -> Listener:
        """Returns at once; the SUBSCRIBE goes out with the writer's next batch."""
        return self._channels.listen(channel, callback)

    def route(
        self, channel: str, callback: Callable[[Event], None]
    ) -> AbstractAsyncContextManager[None]:
        """Entered once Redis routes the channel here, as `subscribe` is."""
        return self._channels.routing(channel, callback, confirm_within=self.socket_timeout)

    def backoff(self, failures: int) -> float:
        return timing.backoff(failures, self.reconnect_min, self.reconnect_max)

    def _publish_lost(self, channels: Sequence[str]) -> None:
        """A publish on `channels` failed; a backend may do more about it."""
        self.publish_failures += len(channels)

    # -- hooks ---------------------------------------------------------------

    @abstractmethod
    def wire(self, channel: str) -> bytes:
        """The channel's name on the wire."""

    @abstractmethod
    def _connected_client(self) -> Any:
        """The redis-py client to publish with; raises before `connect`."""

    @abstractmethod
    async def _ping(self) -> bool: ...

    @abstractmethod
    def _new_channel(self) -> ChannelT: ...

    @abstractmethod
    def _opened(self, channel: str, state: ChannelT) -> None:
        """The channel's first local subscriber arrived: put it on the wire."""

    @abstractmethod
    def _may_wait(self, state: ChannelT) -> bool:
        """Whether a confirmation can come now (else it resyncs when it does)."""

    @abstractmethod
    def _closed(self, channel: str, state: ChannelT) -> None:
        """The channel's last local subscriber left: take it off the wire."""
