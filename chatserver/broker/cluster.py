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
  `ClusterLink`, cluster_link.py), read by its own task, channels
  SSUBSCRIBEd one command each (a command may only name one slot);
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
Resync (missed.py). `MISSED` is therefore a reserved payload on this backend.

What this backend shares with the one-server broker lives in `backend.py`,
`channels.py`, `reader.py`, `writer.py`, `publisher.py` and `timing.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Unpack

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from chatserver.broker import timing
from chatserver.broker.backend import Options, RedisBackend
from chatserver.broker.clients import KEY_ERRORS
from chatserver.broker.cluster_link import ClusterLink, ShardChannel
from chatserver.broker.missed import MissedChannels
from chatserver.broker.shards import (
    cluster_client,
    logical_channel,
    node_connection,
    wire_channel,
)
from chatserver.settings import cluster_url

logger = logging.getLogger(__name__)


class ClusterBroker(RedisBackend[ShardChannel]):
    backend = "Redis Cluster"
    log = logger
    publish_command = "spublish"
    unconfirmed_warning = "Redis Cluster did not confirm SSUBSCRIBE %s in time"

    def __init__(self, url: str, **options: Unpack[Options]) -> None:
        super().__init__(url, **options)
        self.cluster = cluster_url(url)
        # Channels routed again (failover, migration, a dropped link).
        self.reroutes = 0
        self._missed = MissedChannels()
        self._links: dict[str, ClusterLink] = {}
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
            self._publisher.ok = True
        except KEY_ERRORS as exc:
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
        self._channels.close_all()
        self._publisher.ok = False
        await self._publisher.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def healthy(self) -> bool:
        """Publishing works and every shard link in use is up."""
        return self._publisher.ok and not any(link.down for link in self._links.values())

    @property
    def missed_dropped(self) -> int:
        """Channels dropped from the MISSED list (a long outage, a busy worker)."""
        return self._missed.dropped

    async def _ping(self) -> bool:
        if self._client is None:
            return False
        return bool(await self._client.ping(target_nodes=RedisCluster.PRIMARIES))

    def _connected_client(self) -> RedisCluster:
        if self._client is None:
            raise RuntimeError("ClusterBroker.connect() must be awaited before publishing")
        return self._client

    def _publish_failed(self, exc: BaseException, channels: list[str]) -> None:
        """As if a publish on `channels` had failed (tests stand in for a
        failover with it)."""
        self._publisher.fail(exc, channels)

    def _publish_lost(self, channels: Sequence[str]) -> None:
        super()._publish_lost(channels)
        self._missed.remember(channels)
        # A failover or a migration shows up here first; the router looks.
        self._topology_changed.set()

    # -- subscribing -----------------------------------------------------

    def _new_channel(self) -> ShardChannel:
        return ShardChannel()

    def _may_wait(self, state: ShardChannel) -> bool:
        return state.may_wait()

    def _closed(self, channel: str, state: ShardChannel) -> None:
        state.unplace(channel)

    def _opened(self, channel: str, state: ShardChannel) -> None:
        """Attach a channel to the link of the primary that owns its slot."""
        link = self._owner_link(channel)
        state.link = link
        if link is None:
            state.resync_on_confirm = True
            self._topology_changed.set()
        else:
            link.attach(channel)

    def _owner_link(self, channel: str) -> ClusterLink | None:
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
            link = self._links[node.name] = ClusterLink(self, node)
            link.start()
        return link

    # -- what links report -----------------------------------------------

    def deliver(self, channel: str, payload: bytes) -> None:
        self.overflows += self._channels.deliver(channel, payload)

    def missed(self, channel: str) -> None:
        """A publisher could not publish on `channel` for a while."""
        state = self._channels.get(channel)
        if state is not None:
            state.resync()

    def confirmed(self, link: ClusterLink, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None and state.link is link:
            state.confirm()

    def displaced(self, link: ClusterLink, channel: str) -> None:
        """The channel is no longer subscribed on `link`: route it again."""
        state = self._channels.get(channel)
        if state is None or state.link is not link:
            return
        state.stale = True
        state.resync_on_confirm = True
        state.release()
        self._topology_changed.set()

    def link_lost(self, link: ClusterLink) -> None:
        """Every channel of a dropped link may have missed messages; the
        primary may be gone for good, so the router looks at the slot map."""
        for channel in link.channels:
            state = self._channels.get(channel)
            if state is not None and state.link is link:
                state.resync_on_confirm = True
                state.release()
        self._topology_changed.set()

    # -- the router ------------------------------------------------------

    async def _route_forever(self) -> None:
        failures = 0
        while not self._stopping:
            await self._topology_changed.wait()
            self._topology_changed.clear()
            try:
                await self._refresh()
                announced = await self._missed.announce(self._connected_client(), self.wire)
            except KEY_ERRORS as exc:
                logger.warning("Redis Cluster slot map refresh failed: %s", exc)
                announced = False
            except Exception:
                logger.exception("Redis Cluster router failed; retrying")
                announced = False
            if not announced:
                failures += 1
                self._topology_changed.set()
                await asyncio.sleep(self.backoff(failures))
                continue
            failures = 0
            # Coalesce a burst of reports (a failover drops many links).
            await asyncio.sleep(self.reconnect_min)

    async def _refresh(self) -> None:
        client = self._connected_client()
        await client.nodes_manager.initialize()
        self._publisher.ok = True
        unplaced = False
        for channel, state in list(self._channels.by_name.items()):
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
        return node_connection(self.cluster, host, port, socket_timeout=self.socket_timeout)

    def wire(self, channel: str) -> bytes:
        return wire_channel(self.prefix, channel).encode()

    def logical(self, wire: bytes) -> str | None:
        return logical_channel(self.prefix, wire)

    def slot(self, channel: str) -> int:
        return key_slot(self.wire(channel))
