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

The pieces are shared with the cluster backend: `backend.py` (settings and
the calls answered alike), `channels.py` (local subscribers, confirmation),
`reader.py` and `writer.py` (the connection), `publisher.py` (publishing),
`timing.py` (timeouts and backoff).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Unpack

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from chatserver.broker import timing
from chatserver.broker.backend import Options, RedisBackend
from chatserver.broker.channels import LocalChannel
from chatserver.broker.reader import PUBSUB_PROTOCOL, PubSubReader
from chatserver.broker.writer import Command

logger = logging.getLogger(__name__)


class RedisBroker(RedisBackend[LocalChannel]):
    backend = "Redis"
    log = logger
    publish_command = "publish"
    unconfirmed_warning = "Redis did not confirm SUBSCRIBE %s in time"

    def __init__(self, url: str, **options: Unpack[Options]) -> None:
        super().__init__(url, **options)
        self.reconnects = 0
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
        await self._publisher.close()
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

    async def _ping(self) -> bool:
        return self._client is not None and bool(await self._client.ping())

    def _connected_client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("RedisBroker.connect() must be awaited before publishing")
        return self._client

    # -- subscribing -----------------------------------------------------

    def _new_channel(self) -> LocalChannel:
        return LocalChannel()

    # While down there is nothing to send: the reconnect re-subscribes
    # from local state instead.

    def _opened(self, channel: str, state: LocalChannel) -> None:
        if self._reader is not None:
            self._reader.send_subscribe("SUBSCRIBE", channel, self.wire(channel))

    def _may_wait(self, state: LocalChannel) -> bool:
        return self._reader is not None and self._reader.connected

    def _closed(self, channel: str, state: LocalChannel) -> None:
        if self._reader is not None:
            self._reader.send("UNSUBSCRIBE", self.wire(channel))

    def wire(self, channel: str) -> bytes:
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
        return self._pool.connection_class(
            **{**self._pool.connection_kwargs, "protocol": PUBSUB_PROTOCOL}
        )

    def serving(self) -> list[Command]:
        broker = self._broker
        channels = broker._channels.by_name
        for channel, state in channels.items():
            state.resync_on_confirm = True
            self.unconfirmed[channel] += 1
        if self.first_attempt.is_set():
            broker.reconnects += 1
            logger.warning("Redis pub/sub connection restored")
        broker._publisher.ok = True
        self.first_attempt.set()
        if not channels:
            return []
        return [("SUBSCRIBE", *(broker.wire(c) for c in channels))]

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
        return self._broker.backoff(failures)

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
