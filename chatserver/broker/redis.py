"""Redis pub/sub broker: live fan-out between worker processes.

One pub/sub connection per process, read by a single task that dispatches to
local subscriptions by channel. A channel is SUBSCRIBEd on the wire when its
first local subscriber arrives and UNSUBSCRIBEd when the last one leaves.
Wire commands are queued synchronously with the change of local state and sent
in order by a writer task, so SUBSCRIBE/UNSUBSCRIBE on the wire always match
the local state, even when a subscription is cancelled mid-flight.

Redis going away never reaches publishers: the message is already committed,
so a failed publish is logged and counted. The reader reconnects with capped,
jittered exponential backoff, re-SUBSCRIBEs every channel with local
subscribers and, once Redis confirms, puts a Resync into every subscription,
which then catches up from the database (SPEC section 3, guarantee 2).

The pieces are shared with the cluster backend: `channels.py` (local
subscribers, confirmation), `reader.py` and `writer.py` (the connection),
`publisher.py` (publishing), `timing.py` (timeouts and backoff).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatserver.broker import timing
from chatserver.broker.base import DEFAULT_QUEUE_SIZE, Subscription
from chatserver.broker.channels import ChannelRegistry, LocalChannel
from chatserver.broker.clients import KEY_ERRORS
from chatserver.broker.publisher import Publisher
from chatserver.broker.reader import PubSubReader
from chatserver.broker.writer import Command

logger = logging.getLogger(__name__)


class RedisBroker:
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
        self.reconnects = 0
        self._channels = ChannelRegistry(
            LocalChannel,
            opened=lambda channel, _: self._send("SUBSCRIBE", channel),
            may_wait=lambda _: self._reader is not None and self._reader.connected,
            closed=lambda channel, _: self._send("UNSUBSCRIBE", channel),
            logger=logger,
            unconfirmed_warning="Redis did not confirm SUBSCRIBE %s in time",
        )
        # Whether Redis answered last, by a publish or the reader.
        self._publisher = Publisher(
            self._connected_client,
            command="publish",
            wire=self._wire,
            failed=self._count_failures,
            backend="Redis",
            logger=logger,
        )
        self._pool: ConnectionPool | None = None
        self._client: Redis | None = None
        self._reader: _Reader | None = None

    # -- lifecycle -------------------------------------------------------

    async def connect(self) -> None:
        """Start the reader and wait for its first connection attempt.

        Redis being down at start-up is not fatal: the reader keeps retrying
        and `healthy` stays False until it succeeds.
        """
        if self._reader is not None:
            return
        self._pool = ConnectionPool.from_url(
            self.url,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), timing.PUBLISH_RETRIES),
        )
        self._client = Redis(connection_pool=self._pool)
        self._reader = _Reader(self, self._pool)
        self._reader.start()
        await self._reader.first_attempt.wait()

    async def disconnect(self) -> None:
        """Stop the reader, close connections and end every open subscription."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()
        self._channels.close_all()
        self._publisher.ok = False
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.disconnect()

    @property
    def healthy(self) -> bool:
        """False from a failure until Redis is known to answer again."""
        return self._publisher.ok

    async def ping(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.ping())
        except KEY_ERRORS:
            return False

    # -- publishing ------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        await self._publisher.publish(channel, payload)

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish a batch in one round trip."""
        await self._publisher.publish_many(items)

    def _connected_client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("RedisBroker.connect() must be awaited before publishing")
        return self._client

    def _count_failures(self, channels: Sequence[str]) -> None:
        self.publish_failures += len(channels)

    # -- subscribing -----------------------------------------------------

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """Yields once Redis routes the channel here, so history read afterwards
        cannot miss a message published in between (SPEC section 5, subscribe)."""
        return self._channels.subscription(
            channel, queue_size=self.queue_size, confirm_within=self.socket_timeout
        )

    def _send(self, command: str, channel: str) -> None:
        """Queue a command for the current connection; while down, the reconnect
        re-subscribes from local state instead."""
        if self._reader is None:
            return
        if command == "SUBSCRIBE":
            self._reader.send_subscribe(command, channel, self._wire(channel))
        else:
            self._reader.send(command, self._wire(channel))

    def _wire(self, channel: str) -> bytes:
        return (self.prefix + channel).encode()


class _Reader(PubSubReader):
    """The broker's one pub/sub connection, carrying every channel."""

    def __init__(self, broker: RedisBroker, pool: ConnectionPool) -> None:
        super().__init__(health_check_interval=broker.health_check_interval)
        self._broker = broker
        self._pool = pool
        self.first_attempt = asyncio.Event()

    def new_connection(self) -> AbstractConnection:
        # A connection of its own, outside the pool: pub/sub mode makes it
        # unusable for anything else.
        return self._pool.connection_class(**self._pool.connection_kwargs)

    def serving(self) -> list[Command]:
        broker = self._broker
        channels = broker._channels
        for channel in channels:
            state = channels.by_name[channel]
            state.resync_on_confirm = True
            self.unconfirmed[channel] += 1
        if self.first_attempt.is_set():
            broker.reconnects += 1
            logger.warning("Redis pub/sub connection restored")
        broker._publisher.ok = True
        self.first_attempt.set()
        if not channels:
            return []
        return [("SUBSCRIBE", *(broker._wire(c) for c in channels))]

    def ended(self) -> None:
        for state in self._broker._channels.by_name.values():
            state.release()

    def failed(self, exc: Exception, served: bool) -> None:
        if served or not self.first_attempt.is_set():
            logger.warning("Redis pub/sub connection failed: %s", exc)
        self._broker._publisher.ok = False

    def crashed(self) -> None:
        logger.exception("Redis broker reader failed; reconnecting")
        self._broker._publisher.ok = False

    def attempted(self) -> None:
        self.first_attempt.set()

    def backoff(self, failures: int) -> float:
        return timing.backoff(failures, self._broker.reconnect_min, self._broker.reconnect_max)

    def dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return  # PONG and other replies carry nothing for subscribers
        kind, wire_channel = response[0], response[1]
        if not isinstance(wire_channel, bytes):
            return
        broker = self._broker
        channel = wire_channel.decode()[len(broker.prefix) :]
        if kind == b"message":
            broker.overflows += broker._channels.deliver(channel, response[2])
        elif kind == b"subscribe" and self.settles(channel):
            state = broker._channels.get(channel)
            if state is not None:
                state.confirm()
