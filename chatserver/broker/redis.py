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
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chatserver.broker import timing
from chatserver.broker.base import (
    DEFAULT_QUEUE_SIZE,
    RESYNC,
    Delivery,
    QueueSubscription,
    Subscription,
    offer_all,
)

logger = logging.getLogger(__name__)

# Errors that mean "the connection to Redis is unusable".
_CONNECTION_ERRORS = (RedisError, OSError)

# Commands for the writer task; None tells it to stop.
_Commands: TypeAlias = "asyncio.Queue[tuple[str | bytes, ...] | None]"


class _Channel:
    """Local subscribers of one channel and its state on the current connection."""

    def __init__(self) -> None:
        self.subscriptions: set[QueueSubscription] = set()
        # Set when Redis confirms the SUBSCRIBE, or when the connection is
        # lost (the reconnect then sends a Resync): either way a waiting
        # subscriber may proceed.
        self.settled = asyncio.Event()
        # Subscribed again after an outage: subscribers get a Resync once
        # Redis confirms.
        self.resync_on_confirm = False


# Channels per merged SUBSCRIBE/UNSUBSCRIBE: one command stays a few KiB.
MERGE_CHANNELS = 500


def _merged(commands: Sequence[tuple[str | bytes, ...]]) -> list[tuple[str | bytes, ...]]:
    """Consecutive SUBSCRIBEs (or UNSUBSCRIBEs) as one command each run, in
    order: Redis confirms each channel of a SUBSCRIBE on its own, so the
    reader's bookkeeping is the same, and the order of a SUBSCRIBE and an
    UNSUBSCRIBE of one channel is kept."""
    merged: list[tuple[str | bytes, ...]] = []
    for command in commands:
        last = merged[-1] if merged else None
        if (
            last is not None
            and command[0] in ("SUBSCRIBE", "UNSUBSCRIBE")
            and last[0] == command[0]
            and len(last) <= MERGE_CHANNELS
        ):
            merged[-1] = (*last, *command[1:])
        else:
            merged.append(command)
    return merged


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
        self._healthy = False
        self._channels: dict[str, _Channel] = {}
        self._pool: ConnectionPool | None = None
        self._client: Redis | None = None
        self._reader: asyncio.Task[None] | None = None
        # Wire state of the current pub/sub connection; None while down.
        self._commands: _Commands | None = None
        self._unconfirmed: Counter[str] = Counter()
        self._first_attempt = asyncio.Event()
        self._stopping = False

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
        self._first_attempt.clear()
        self._stopping = False
        self._reader = asyncio.create_task(self._read_forever(), name="broker-reader")
        await self._first_attempt.wait()

    async def disconnect(self) -> None:
        """Stop the reader, close connections and end every open subscription."""
        reader, self._reader = self._reader, None
        if reader is not None:
            # The flag stops the reader even if redis-py swallowed the cancel
            # (Python 3.11's wait_for can, when its send completes meanwhile).
            self._stopping = True
            reader.cancel()
            await asyncio.wait({reader})
        for channel in self._channels.values():
            for subscription in channel.subscriptions:
                subscription.close()
        self._channels.clear()
        self._healthy = False
        client, self._client = self._client, None
        pool, self._pool = self._pool, None
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.disconnect()

    @property
    def healthy(self) -> bool:
        """False from a failure until Redis is known to answer again."""
        return self._healthy

    async def ping(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.ping())
        except _CONNECTION_ERRORS:
            return False

    # -- publishing ------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        client = self._connected_client()
        try:
            await client.publish(self._wire(channel), payload)
        except _CONNECTION_ERRORS as exc:
            self._publish_failed(exc, 1)
        else:
            self._healthy = True

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish a batch in one round trip."""
        if not items:
            return
        client = self._connected_client()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for channel, payload in items:
                    pipe.publish(self._wire(channel), payload)
                await pipe.execute()
        except _CONNECTION_ERRORS as exc:
            self._publish_failed(exc, len(items))
        else:
            self._healthy = True

    def _connected_client(self) -> Redis:
        if self._client is None:
            raise RuntimeError("RedisBroker.connect() must be awaited before publishing")
        return self._client

    def _publish_failed(self, exc: BaseException, count: int) -> None:
        self.publish_failures += count
        if self._healthy:
            logger.warning("Redis publish failed; live fan-out paused: %s", exc)
        else:
            logger.debug("Redis publish failed during outage: %s", exc)
        self._healthy = False

    # -- subscribing -----------------------------------------------------

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription(channel)

    @asynccontextmanager
    async def _subscription(self, channel: str) -> AsyncIterator[Subscription]:
        """Yield once Redis routes the channel here, so history read afterwards
        cannot miss a message published in between (SPEC section 5, subscribe).
        """
        subscription = QueueSubscription(channel, self.queue_size)
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            self._send("SUBSCRIBE", channel)
        state.subscriptions.add(subscription)
        try:
            if self._commands is not None and not state.settled.is_set():
                await self._await_confirmation(state, subscription)
            yield subscription
        finally:
            subscription.close()
            state.subscriptions.discard(subscription)
            if not state.subscriptions and self._channels.get(channel) is state:
                del self._channels[channel]
                self._send("UNSUBSCRIBE", channel)

    async def _await_confirmation(self, state: _Channel, subscription: QueueSubscription) -> None:
        try:
            async with asyncio.timeout(self.socket_timeout):
                await state.settled.wait()
        except TimeoutError:
            logger.warning("Redis did not confirm SUBSCRIBE %s in time", subscription.channel)
            subscription.offer(RESYNC)

    def _send(self, command: str, channel: str) -> None:
        """Queue a command for the current connection; while down, the reconnect
        re-subscribes from local state instead."""
        if self._commands is None:
            return
        if command == "SUBSCRIBE":
            self._unconfirmed[channel] += 1
        self._commands.put_nowait((command, self._wire(channel)))

    def _wire(self, channel: str) -> bytes:
        return (self.prefix + channel).encode()

    # -- the reader ------------------------------------------------------

    async def _read_forever(self) -> None:
        assert self._pool is not None
        failures = 0
        while not self._stopping:
            # A connection of its own, outside the pool: pub/sub mode makes it
            # unusable for anything else.
            connection = self._pool.connection_class(**self._pool.connection_kwargs)
            served = False
            try:
                await connection.connect()  # type: ignore[no-untyped-call]  # unannotated upstream
                failures = 0
                if not self._stopping:
                    served = True
                    await self._serve(connection)
            except _CONNECTION_ERRORS as exc:
                if served or not self._first_attempt.is_set():
                    logger.warning("Redis pub/sub connection failed: %s", exc)
                self._healthy = False
                failures += 1
            except Exception:
                # A bug must not end live fan-out for the life of the process.
                logger.exception("Redis broker reader failed; reconnecting")
                self._healthy = False
                failures += 1
            finally:
                self._first_attempt.set()
                await connection.disconnect(nowait=True)
            if not self._stopping:
                await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        return timing.backoff(failures, self.reconnect_min, self.reconnect_max)

    async def _serve(self, connection: AbstractConnection) -> None:
        """Run one connection: re-subscribe, then read until it fails."""
        commands: _Commands = asyncio.Queue()
        self._unconfirmed.clear()
        if self._channels:
            for channel, state in self._channels.items():
                state.resync_on_confirm = True
                self._unconfirmed[channel] += 1
            commands.put_nowait(("SUBSCRIBE", *(self._wire(c) for c in self._channels)))
        self._commands = commands
        if self._first_attempt.is_set():
            self.reconnects += 1
            logger.warning("Redis pub/sub connection restored")
        self._healthy = True
        self._first_attempt.set()
        writer = asyncio.create_task(self._write(connection, commands), name="broker-writer")
        try:
            await self._read(connection, commands)
        finally:
            self._commands = None
            # The sentinel ends the writer even if a send swallowed the cancel.
            commands.put_nowait(None)
            writer.cancel()
            await asyncio.wait({writer})
            for state in self._channels.values():
                state.settled.set()
                state.settled = asyncio.Event()

    async def _write(self, connection: AbstractConnection, commands: _Commands) -> None:
        while True:
            batch = [await commands.get()]
            while not commands.empty() and batch[-1] is not None:
                batch.append(commands.get_nowait())
            stop = batch[-1] is None
            wire = _merged([c for c in batch if c is not None])
            if not connection.is_connected:
                # Checked right before sending: send_command would otherwise
                # silently reconnect behind the reader's back.
                return
            if wire:
                try:
                    # Everything queued meanwhile in one write; a crowd's
                    # SUBSCRIBEs become one command per few hundred channels.
                    await connection.send_packed_command(
                        connection.pack_commands(wire), check_health=False
                    )
                except _CONNECTION_ERRORS:
                    # The failed send closed the socket; the reader sees it and
                    # starts the reconnect.
                    return
            if stop:
                return

    async def _read(self, connection: AbstractConnection, commands: _Commands) -> None:
        awaiting_pong = False
        while not self._stopping:
            if not connection.is_connected:
                raise ConnectionError("pub/sub connection closed")
            response = await connection.read_response(
                timeout=self.health_check_interval, push_request=True
            )
            if response is None:
                if awaiting_pong:
                    raise TimeoutError("Redis did not answer PING")
                commands.put_nowait(("PING",))
                awaiting_pong = True
                continue
            awaiting_pong = False
            self._dispatch(response)

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return  # PONG and other replies carry nothing for subscribers
        kind, wire_channel = response[0], response[1]
        if not isinstance(wire_channel, bytes):
            return
        channel = wire_channel.decode()[len(self.prefix) :]
        if kind == b"message":
            state = self._channels.get(channel)
            if state is not None:
                delivery = Delivery(channel, response[2])
                self.overflows += offer_all(state.subscriptions, delivery)
        elif kind == b"subscribe":
            self._confirm(channel)

    def _confirm(self, channel: str) -> None:
        self._unconfirmed[channel] -= 1
        if self._unconfirmed[channel] > 0:
            return  # a later SUBSCRIBE of the same channel is still in flight
        del self._unconfirmed[channel]
        state = self._channels.get(channel)
        if state is None:
            return
        state.settled.set()
        if state.resync_on_confirm:
            state.resync_on_confirm = False
            offer_all(state.subscriptions, RESYNC)
