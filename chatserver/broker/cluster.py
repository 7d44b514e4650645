"""Redis Cluster broker: sharded pub/sub (SSUBSCRIBE / SPUBLISH, Redis 7).

Plain PUBLISH on a cluster is broadcast to every node, so its cost grows with
the cluster. A shard channel lives on the primary that owns its hash slot,
like a key: SPUBLISH goes to that primary and reaches the clients that
SSUBSCRIBEd there. Wire names are `<prefix>{<channel>}`; the hash tag makes
the slot a function of the logical channel alone, and lets keys about the
same thing (a conversation's presence) live on the same shard.

Publishing goes through redis-py's `RedisCluster`, which routes by slot and
follows MOVED. Subscribing does not use its `ClusterPubSub`: that polls one
node connection after another and never tells the application that a
subscription was re-made, so messages missed meanwhile would go unnoticed.
Instead this module keeps what `RedisBroker` does for one server, per shard:

- one pub/sub connection per primary that owns a subscribed channel (a
  `_Link`), read by its own task, channels SSUBSCRIBEd one command each
  (a batch may only name channels of one slot);
- a subscriber is let through once its SSUBSCRIBE is confirmed, so history
  read afterwards cannot miss a message;
- whenever a channel may have missed messages (its link dropped, its primary
  died and a replica took over, its slot migrated: Redis then sends an
  unsolicited `sunsubscribe`, or answers MOVED), the channel is routed again
  from a fresh slot map and, once the new owner confirms, every local
  subscription receives a `Resync` and catches up from the database
  (SPEC section 3), as after a single-Redis outage.

A router task owns re-routing: links and readers only report trouble, the
router refreshes the slot map (bounded backoff) and moves channels. A link
left without channels is closed.

One gap is the publisher's to close: after a failover each worker learns the
new slot map on its own, so a worker may fail to publish a message (stored,
acknowledged) after the subscribers elsewhere have already re-subscribed and
caught up. Such a worker remembers the channel and, once SPUBLISH works
again, publishes `MISSED` on it; every subscriber that receives it gets a
Resync. `MISSED` is therefore a reserved payload on this backend.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeAlias

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, RedisClusterException, ResponseError

from chatserver.broker import timing
from chatserver.broker.base import (
    DEFAULT_QUEUE_SIZE,
    RESYNC,
    Delivery,
    QueueSubscription,
    Subscription,
    offer_all,
)
from chatserver.broker.clients import KEY_ERRORS
from chatserver.settings import ClusterUrl, cluster_url

logger = logging.getLogger(__name__)

# Errors that mean "the cluster, or a node of it, is unusable right now".
_CONNECTION_ERRORS = KEY_ERRORS

# Published on a channel after a failed publish: "you may have missed one".
# No event is encoded with a NUL byte, so no payload can be mistaken for it.
MISSED = b"\x00chatserver:missed\x00"
# Channels remembered for a MISSED; past this many (a long outage on a busy
# worker) the oldest are dropped and counted in `missed_dropped`.
MAX_MISSED_CHANNELS = 100_000
# MISSED announcements in flight at once.
ANNOUNCE_BATCH = 100

# Commands for a link's writer task; None tells it to stop.
_Commands: TypeAlias = "asyncio.Queue[tuple[str | bytes, ...] | None]"


def wire_channel(prefix: str, channel: str) -> str:
    """The shard channel on the wire: the logical name is the hash tag."""
    return f"{prefix}{{{channel}}}"


def cluster_client(url: ClusterUrl, *, socket_timeout: float, **kwargs: Any) -> RedisCluster:
    """A `RedisCluster` on the seed nodes; partial coverage (a shard failing
    over) leaves the other shards usable instead of failing every command."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in url.seeds],
        username=url.username,
        password=url.password,
        ssl=url.tls,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        require_full_coverage=False,
        **kwargs,
    )


class _Channel:
    """Local subscribers of one channel and where it is subscribed."""

    def __init__(self) -> None:
        self.subscriptions: set[QueueSubscription] = set()
        # Set when the owner confirms SSUBSCRIBE, or when the link is lost
        # (a Resync follows later): either way a waiting subscriber proceeds.
        self.settled = asyncio.Event()
        # The subscription may have missed messages: Resync on confirmation.
        self.resync_on_confirm = False
        self.link: _Link | None = None
        # Unsubscribed by Redis (slot moved) or refused with MOVED: the
        # router subscribes it again even if the slot map still names `link`.
        self.stale = False


class _Link:
    """One pub/sub connection to one primary and the channels it carries."""

    def __init__(self, broker: ClusterBroker, node: ClusterNode) -> None:
        self.broker = broker
        self.name = node.name
        self.host = node.host
        self.port = int(node.port)
        self.channels: set[str] = set()
        self.failed = False
        self._commands: _Commands | None = None
        self._unconfirmed: Counter[str] = Counter()
        self._unsubscribing: Counter[str] = Counter()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"broker-link-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    # -- channels ----------------------------------------------------------

    def attach(self, channel: str) -> None:
        """Carry `channel`; SSUBSCRIBE now if connected, else on connect."""
        self.channels.add(channel)
        if self._commands is not None:
            self._unconfirmed[channel] += 1
            self._commands.put_nowait(("SSUBSCRIBE", self.broker.wire(channel)))

    def detach(self, channel: str) -> None:
        # `_unconfirmed` keeps counting: a SSUBSCRIBE still in flight will be
        # answered, and must not settle a later subscription of the channel.
        self.channels.discard(channel)
        if self._commands is not None:
            self._unsubscribing[channel] += 1
            self._commands.put_nowait(("SUNSUBSCRIBE", self.broker.wire(channel)))

    # -- the connection ----------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            connection = self.broker.connection(self.host, self.port)
            try:
                await connection.connect()  # type: ignore[no-untyped-call]  # unannotated upstream
                failures = 0
                self.failed = False
                if not self._stopping:
                    await self._serve(connection)
            except _CONNECTION_ERRORS as exc:
                if not self._stopping:
                    logger.warning("Redis Cluster pub/sub link to %s failed: %s", self.name, exc)
                failures += 1
            except Exception:
                # A bug must not end live fan-out for the life of the process.
                logger.exception("Redis Cluster pub/sub link to %s failed; reconnecting", self.name)
                failures += 1
            finally:
                await connection.disconnect(nowait=True)
            if self._stopping:
                return
            self.failed = True
            self.broker.link_lost(self)
            await asyncio.sleep(self.broker.backoff(failures))

    async def _serve(self, connection: AbstractConnection) -> None:
        commands: _Commands = asyncio.Queue()
        self._unconfirmed.clear()
        self._unsubscribing.clear()
        for channel in self.channels:
            self._unconfirmed[channel] += 1
            commands.put_nowait(("SSUBSCRIBE", self.broker.wire(channel)))
        self._commands = commands
        writer = asyncio.create_task(self._write(connection, commands), name="broker-link-writer")
        try:
            await self._read(connection, commands)
        finally:
            self._commands = None
            commands.put_nowait(None)
            writer.cancel()
            await asyncio.wait({writer})

    async def _write(self, connection: AbstractConnection, commands: _Commands) -> None:
        while True:
            command = await commands.get()
            if command is None or not connection.is_connected:
                return
            try:
                await connection.send_command(*command, check_health=False)
            except (*_CONNECTION_ERRORS, AttributeError):
                # AttributeError: redis-py's send on a connection closed
                # meanwhile (at shutdown) finds no writer. Either way the
                # reader sees the closed socket and reconnects.
                return

    async def _read(self, connection: AbstractConnection, commands: _Commands) -> None:
        interval = self.broker.health_check_interval
        awaiting_pong = False
        while not self._stopping:
            if not connection.is_connected:
                raise ConnectionError(f"pub/sub link to {self.name} closed")
            try:
                response = await connection.read_response(timeout=interval, push_request=True)
            except (MovedError, AskError) as exc:
                # SSUBSCRIBE reached a node that no longer owns the slot.
                self._refused(exc.slot_id)
                continue
            except ResponseError as exc:
                # CLUSTERDOWN, TRYAGAIN and the like: the reply does not
                # say which channel, so every unconfirmed one is retried.
                logger.warning("Redis Cluster node %s refused SSUBSCRIBE: %s", self.name, exc)
                self._refused(None)
                continue
            if response is None:
                if awaiting_pong:
                    raise TimeoutError(f"Redis Cluster node {self.name} did not answer PING")
                commands.put_nowait(("PING",))
                awaiting_pong = True
                continue
            awaiting_pong = False
            self._dispatch(response)

    def _dispatch(self, response: Any) -> None:
        if not isinstance(response, list) or len(response) < 2:
            return
        kind, wire = response[0], response[1]
        if not isinstance(wire, bytes):
            return  # PONG
        channel = self.broker.logical(wire)
        if channel is None:
            return
        if kind == b"smessage":
            if response[2] == MISSED:
                self.broker.missed(channel)
            else:
                self.broker.deliver(channel, response[2])
        elif kind == b"ssubscribe":
            self._confirm(channel)
        elif kind == b"sunsubscribe":
            if self._unsubscribing[channel] > 0:
                self._unsubscribing[channel] -= 1
                if not self._unsubscribing[channel]:
                    del self._unsubscribing[channel]
                return
            # Unsolicited: the slot moved to another primary (or was
            # removed). Messages published there meanwhile did not reach us.
            if channel in self.channels:
                self.broker.displaced(self, channel)

    def _confirm(self, channel: str) -> None:
        waiting = self._unconfirmed.get(channel, 0)
        if waiting > 1:
            self._unconfirmed[channel] = waiting - 1
            return  # a later SSUBSCRIBE of the same channel is still in flight
        self._unconfirmed.pop(channel, None)
        if channel in self.channels:
            self.broker.confirmed(self, channel)

    def _refused(self, slot: int | None) -> None:
        # A SUNSUBSCRIBE of a slot that moved is refused too; its reply
        # will not come.
        for channel in list(self._unsubscribing):
            if slot is None or self.broker.slot(channel) == slot:
                del self._unsubscribing[channel]
        for channel in list(self._unconfirmed):
            if slot is None or self.broker.slot(channel) == slot:
                del self._unconfirmed[channel]
                if channel in self.channels:
                    self.broker.displaced(self, channel)


class ClusterBroker:
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
        self.cluster = cluster_url(url)
        self.prefix = prefix
        self.queue_size = queue_size
        self.socket_timeout = socket_timeout
        self.health_check_interval = health_check_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.publish_failures = 0
        self.overflows = 0
        # Channels routed again (failover, migration, a dropped link).
        self.reroutes = 0
        self.missed_dropped = 0
        # Channels a publish failed on, in order, for the MISSED after.
        self._missed: dict[str, None] = {}
        self._publish_ok = False
        self._channels: dict[str, _Channel] = {}
        self._links: dict[str, _Link] = {}
        self._client: RedisCluster | None = None
        self._router: asyncio.Task[None] | None = None
        self._topology_changed = asyncio.Event()
        self._stopping = False

    # -- lifecycle -------------------------------------------------------

    async def connect(self) -> None:
        """Learn the slot map from a seed; a cluster that is down at start-up
        is not fatal (the router keeps trying, `healthy` stays False)."""
        if self._router is not None:
            return
        self._stopping = False
        self._client = cluster_client(
            self.cluster,
            socket_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), timing.PUBLISH_RETRIES),
        )
        try:
            await self._client.initialize()
            self._publish_ok = True
        except _CONNECTION_ERRORS as exc:
            logger.warning("Redis Cluster not reachable yet: %s", exc)
            self._topology_changed.set()
        self._router = asyncio.create_task(self._route_forever(), name="broker-router")

    async def disconnect(self) -> None:
        """Stop the router and every link, end every open subscription."""
        self._stopping = True
        router, self._router = self._router, None
        if router is not None:
            router.cancel()
            await asyncio.wait({router})
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.stop() for link in links))
        for state in self._channels.values():
            for subscription in state.subscriptions:
                subscription.close()
        self._channels.clear()
        self._publish_ok = False
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def healthy(self) -> bool:
        """Publishing works and every shard link in use is up."""
        return self._publish_ok and not any(link.failed for link in self._links.values())

    async def ping(self) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.ping(target_nodes=RedisCluster.PRIMARIES))
        except _CONNECTION_ERRORS:
            return False

    # -- publishing ------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        client = self._connected_client()
        try:
            await client.spublish(self.wire(channel), payload)
        except _CONNECTION_ERRORS as exc:
            self._publish_failed(exc, [channel])
        else:
            self._publish_ok = True

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish a batch: one round trip per primary involved, each
        channel's messages in order."""
        if not items:
            return
        client = self._connected_client()
        try:
            async with client.pipeline() as pipe:
                for channel, payload in items:
                    pipe.spublish(self.wire(channel), payload)
                await pipe.execute()
        except _CONNECTION_ERRORS as exc:
            self._publish_failed(exc, [channel for channel, _ in items])
        else:
            self._publish_ok = True

    def _connected_client(self) -> RedisCluster:
        if self._client is None:
            raise RuntimeError("ClusterBroker.connect() must be awaited before publishing")
        return self._client

    def _publish_failed(self, exc: BaseException, channels: list[str]) -> None:
        self.publish_failures += len(channels)
        for channel in channels:
            self._missed[channel] = None
        while len(self._missed) > MAX_MISSED_CHANNELS:
            del self._missed[next(iter(self._missed))]
            self.missed_dropped += 1
        if self._publish_ok:
            logger.warning("Redis Cluster publish failed; live fan-out paused: %s", exc)
        else:
            logger.debug("Redis Cluster publish failed during outage: %s", exc)
        self._publish_ok = False
        # A failover or a migration shows up here first; the router looks.
        self._topology_changed.set()

    # -- subscribing -----------------------------------------------------

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription(channel)

    @asynccontextmanager
    async def _subscription(self, channel: str) -> AsyncIterator[Subscription]:
        """Yield once the owning primary confirms SSUBSCRIBE, so history read
        afterwards cannot miss a message published in between."""
        subscription = QueueSubscription(channel, self.queue_size)
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            self._place(channel, state)
        state.subscriptions.add(subscription)
        try:
            if not state.settled.is_set():
                if state.link is None or state.link.failed:
                    # Nowhere to wait for: catch up once it is subscribed.
                    state.resync_on_confirm = True
                else:
                    await self._await_confirmation(state, subscription)
            yield subscription
        finally:
            subscription.close()
            state.subscriptions.discard(subscription)
            if not state.subscriptions and self._channels.get(channel) is state:
                del self._channels[channel]
                if state.link is not None:
                    state.link.detach(channel)
                    state.link = None

    async def _await_confirmation(self, state: _Channel, subscription: QueueSubscription) -> None:
        try:
            async with asyncio.timeout(self.socket_timeout):
                await state.settled.wait()
        except TimeoutError:
            logger.warning(
                "Redis Cluster did not confirm SSUBSCRIBE %s in time", subscription.channel
            )
            subscription.offer(RESYNC)

    def _place(self, channel: str, state: _Channel) -> None:
        """Attach a channel to the link of the primary that owns its slot."""
        link = self._owner_link(channel)
        state.link = link
        if link is None:
            state.resync_on_confirm = True
            self._topology_changed.set()
        else:
            link.attach(channel)

    def _owner_link(self, channel: str) -> _Link | None:
        client = self._client
        if client is None or self._stopping:
            return None
        try:
            node = client.get_node_from_key(wire_channel(self.prefix, channel))
        except RedisClusterException:  # the slot is not covered (yet)
            return None
        if node is None:
            return None
        link = self._links.get(node.name)
        if link is None:
            link = self._links[node.name] = _Link(self, node)
            link.start()
        return link

    # -- what links report -----------------------------------------------

    def deliver(self, channel: str, payload: bytes) -> None:
        state = self._channels.get(channel)
        if state is not None:
            self.overflows += offer_all(state.subscriptions, Delivery(channel, payload))

    def missed(self, channel: str) -> None:
        """A publisher could not publish on `channel` for a while."""
        state = self._channels.get(channel)
        if state is not None:
            offer_all(state.subscriptions, RESYNC)

    def confirmed(self, link: _Link, channel: str) -> None:
        state = self._channels.get(channel)
        if state is None or state.link is not link:
            return
        state.settled.set()
        if state.resync_on_confirm:
            state.resync_on_confirm = False
            offer_all(state.subscriptions, RESYNC)

    def displaced(self, link: _Link, channel: str) -> None:
        """The channel is no longer subscribed on `link`: route it again."""
        state = self._channels.get(channel)
        if state is None or state.link is not link:
            return
        state.stale = True
        state.resync_on_confirm = True
        self._release(state)
        self._topology_changed.set()

    def link_lost(self, link: _Link) -> None:
        """Every channel of a dropped link may have missed messages; the
        primary may be gone for good, so the router looks at the slot map."""
        for channel in link.channels:
            state = self._channels.get(channel)
            if state is not None and state.link is link:
                state.resync_on_confirm = True
                self._release(state)
        self._topology_changed.set()

    @staticmethod
    def _release(state: _Channel) -> None:
        """Let waiting subscribers proceed; the Resync comes on confirmation."""
        state.settled.set()
        state.settled = asyncio.Event()

    # -- the router ------------------------------------------------------

    async def _route_forever(self) -> None:
        failures = 0
        while not self._stopping:
            await self._topology_changed.wait()
            self._topology_changed.clear()
            try:
                await self._refresh()
            except _CONNECTION_ERRORS as exc:
                failures += 1
                logger.warning("Redis Cluster slot map refresh failed: %s", exc)
                self._topology_changed.set()
                await asyncio.sleep(self.backoff(failures))
                continue
            except Exception:
                failures += 1
                logger.exception("Redis Cluster router failed; retrying")
                self._topology_changed.set()
                await asyncio.sleep(self.backoff(failures))
                continue
            if not await self._announce_missed():
                failures += 1
                self._topology_changed.set()
                await asyncio.sleep(self.backoff(failures))
                continue
            failures = 0
            # Coalesce a burst of reports (a failover drops many links).
            await asyncio.sleep(self.reconnect_min)

    async def _announce_missed(self) -> bool:
        """Publish MISSED on every channel a publish failed on; True once
        all went out (the rest wait for the next round)."""
        if not self._missed:
            return True
        assert self._client is not None
        client = self._client
        channels = list(self._missed)
        for start in range(0, len(channels), ANNOUNCE_BATCH):
            batch = channels[start : start + ANNOUNCE_BATCH]
            results = await asyncio.gather(
                *(client.spublish(self.wire(channel), MISSED) for channel in batch),
                return_exceptions=True,
            )
            for channel, result in zip(batch, results, strict=True):
                if not isinstance(result, BaseException):
                    self._missed.pop(channel, None)
        return not self._missed

    async def _refresh(self) -> None:
        assert self._client is not None
        await self._client.nodes_manager.initialize()
        self._publish_ok = True
        unplaced = False
        for channel, state in list(self._channels.items()):
            target = self._owner_link(channel)
            if target is None:
                unplaced = True
                continue
            if target is state.link and not state.stale:
                continue
            if state.link is not None and state.link is not target:
                state.link.detach(channel)
            state.stale = False
            state.resync_on_confirm = True
            state.link = target
            self.reroutes += 1
            target.attach(channel)
        if unplaced:
            self._topology_changed.set()
        idle = [name for name, link in self._links.items() if not link.channels]
        stopping = [self._links.pop(name) for name in idle]
        await asyncio.gather(*(link.stop() for link in stopping))

    # -- helpers shared with the links ------------------------------------

    def connection(self, host: str, port: int) -> AbstractConnection:
        """A connection of its own, outside any pool: pub/sub mode makes it
        unusable for anything else."""
        kind = SSLConnection if self.cluster.tls else Connection
        return kind(
            host=host,
            port=port,
            username=self.cluster.username,
            password=self.cluster.password,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
        )

    def backoff(self, failures: int) -> float:
        return timing.backoff(failures, self.reconnect_min, self.reconnect_max)

    def wire(self, channel: str) -> bytes:
        return wire_channel(self.prefix, channel).encode()

    def logical(self, wire: bytes) -> str | None:
        text = wire.decode()
        head = self.prefix + "{"
        if not text.startswith(head) or not text.endswith("}"):
            return None
        return text[len(head) : -1]

    def slot(self, channel: str) -> int:
        return key_slot(self.wire(channel))
