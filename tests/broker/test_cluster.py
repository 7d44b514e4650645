"""The Redis Cluster broker's own promises, on real clusters started here.

The shared broker contract runs on it in test_broker.py; this module covers
what only a cluster has: channels spread over shards by hash tag, a primary
dying and its replica taking over, a slot migrating to another primary, and
the key users (presence, worker stats) working through a cluster client.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from chatserver.broker import Delivery, Resync, Subscription, broker_from_url
from chatserver.broker.cluster import ClusterBroker
from chatserver.broker.shards import wire_channel
from chatserver.chat.events import conversation_name, org_channel
from chatserver.chat.presence import RedisPresence
from chatserver.ops.probes import probe_redis
from chatserver.ops.stats import RedisStats
from chatserver.settings import ClusterUrl, Settings, SettingsError, cluster_url
from tests.e2e.servers import free_port
from tests.redis_cluster import RedisClusterProcesses
from tests.waits import eventually_async

ClusterFactory = Callable[..., Awaitable[ClusterBroker]]

RECEIVE_TIMEOUT = 2.0
# Failover: detection (1 s node timeout) plus election, plus our reconnect.
FAILOVER_TIMEOUT = 20.0
# A shard processes an UNSUBSCRIBE, or a presence write lands, within this.
SETTLE_WITHIN = 5.0


async def receive(subscription: Subscription, within: float = RECEIVE_TIMEOUT) -> object:
    async with asyncio.timeout(within):
        return await subscription.get()


async def receive_after_resync(
    subscription: Subscription, payload: bytes, broker: ClusterBroker, within: float
) -> list[object]:
    """Publish `payload` until it arrives (a failover may swallow a few),
    returning every event received on the way; bounded by `within`."""
    events: list[object] = []
    async with asyncio.timeout(within):
        while True:
            await broker.publish(subscription.channel, payload)
            try:
                async with asyncio.timeout(0.2):
                    while True:
                        event = await subscription.get()
                        events.append(event)
                        if event == Delivery(subscription.channel, payload):
                            return events
            except TimeoutError:
                continue


def channels_on_every_shard(cluster: RedisClusterProcesses, prefix: str) -> list[str]:
    """Conversation channels whose slots fall on three different primaries."""
    owners: dict[int, str] = {}
    for i in range(1000):
        channel = org_channel(f"c{i}")
        owner = cluster.owner_of(key_slot(wire_channel(prefix, channel).encode())).port
        owners.setdefault(owner, channel)
        if len(owners) == 3:
            return list(owners.values())
    raise AssertionError("no three channels on three shards among 1000")


# -- naming the cluster --------------------------------------------------------


def test_redis_url_names_a_cluster_by_seed_nodes() -> None:
    assert cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == ClusterUrl(
        (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    )
    assert cluster_url("rediss+cluster://app:s%40cret@cache:6380/0") == ClusterUrl(
        (("cache", 6380),), "app", "s@cret", tls=True
    )
    assert cluster_url("redis+cluster://[::1]:7000,node") == ClusterUrl(
        (("::1", 7000), ("node", 6379))
    )
    for bad in (
        "redis+cluster://a:1/2",
        "redis+cluster://a:1?ssl=true",
        "redis+cluster://a:99999",
        "redis+cluster://a:1,,b:2",
        "redis+cluster://:7000",
    ):
        with pytest.raises(SettingsError, match="REDIS_URL"):
            cluster_url(bad)
    with pytest.raises(SettingsError, match="REDIS_URL"):
        Settings(redis_url="redis+cluster://a:x").validate()


def test_url_chooses_the_cluster_broker() -> None:
    chosen = broker_from_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", prefix="p:")
    assert isinstance(chosen, ClusterBroker)
    assert chosen.prefix == "p:"
    assert chosen.cluster.seeds == (("127.0.0.1", 7000), ("127.0.0.1", 7001))


# -- on a healthy cluster ------------------------------------------------------


async def test_channels_on_every_shard_reach_subscribers_on_another_broker(
    make_cluster_broker: ClusterFactory, redis_cluster: RedisClusterProcesses
) -> None:
    publisher = await make_cluster_broker()
    subscriber = await make_cluster_broker(prefix=publisher.prefix)
    channels = channels_on_every_shard(redis_cluster, publisher.prefix)
    async with (
        subscriber.subscribe(channels[0]) as a,
        subscriber.subscribe(channels[1]) as b,
        subscriber.subscribe(channels[2]) as c,
    ):
        for n in range(50):
            await publisher.publish_many([(ch, str(n).encode()) for ch in channels])
        for subscription in (a, b, c):
            got = [await receive(subscription) for _ in range(50)]
            assert got == [Delivery(subscription.channel, str(n).encode()) for n in range(50)]
    assert publisher.publish_failures == 0
    assert subscriber.healthy


async def test_shard_channels_are_unsubscribed_when_the_last_subscriber_leaves(
    make_cluster_broker: ClusterFactory, redis_cluster: RedisClusterProcesses
) -> None:
    broker = await make_cluster_broker()
    wire = wire_channel(broker.prefix, "conv:gone")
    owner = redis_cluster.owner_of(key_slot(wire.encode()))
    observer = Redis(host="127.0.0.1", port=owner.port)
    try:

        async def subscribers() -> int:
            counts = await observer.pubsub_shardnumsub(wire)
            return int(counts[0][1])

        async def unsubscribed() -> bool:
            return not await subscribers()

        async with broker.subscribe("conv:gone"), broker.subscribe("conv:gone"):
            assert await subscribers() == 1  # one link per primary, per process
        await eventually_async(unsubscribed, within=SETTLE_WITHIN, what="the shard UNSUBSCRIBE")
        assert await subscribers() == 0
    finally:
        await observer.aclose()


async def test_presence_and_worker_stats_work_on_the_cluster(
    redis_cluster: RedisClusterProcesses,
) -> None:
    prefix = "presence-test:"
    writer = RedisPresence(redis_cluster.url, prefix)
    reader = RedisPresence(redis_cluster.url, prefix)
    conversations = [f"c{i}" for i in range(30)]  # over every shard
    await writer.start()
    try:
        for conversation in conversations:
            writer.enter(conversation, "candidate", "cara")
        for conversation in conversations:
            await _until(reader, conversation, True)
        # A conversation's presence keys live on one shard, its name's.
        channel = wire_channel(prefix, conversation_name("c1"))
        assert key_slot(writer._key(("c1", "candidate", "cara")).encode()) == key_slot(
            channel.encode()
        )
        for conversation in conversations:
            writer.leave(conversation, "candidate", "cara")
        for conversation in conversations:
            await _until(reader, conversation, False)
    finally:
        await writer.stop()
        await reader.stop()
    stats = RedisStats(redis_cluster.url, "stats-test:")
    try:
        await stats.put("w1", {"at": time.time(), "connections": 3})
        await stats.put("w2", {"at": time.time(), "connections": 4})
        assert sorted(snapshot["connections"] for snapshot in await stats.all()) == [3, 4]
    finally:
        await stats.close()


async def _until(presence: RedisPresence, conversation: str, online: bool) -> None:
    async def became() -> bool:
        return await presence.online(conversation, "candidate", "cara") == online

    await eventually_async(
        became, within=SETTLE_WITHIN, what=f"{conversation} becoming online={online}"
    )


async def test_the_redis_probe_asks_the_cluster(redis_cluster: RedisClusterProcesses) -> None:
    assert (await probe_redis(Settings(redis_url=redis_cluster.url))).ok
    nobody = f"redis+cluster://127.0.0.1:{free_port()}"
    probe = await probe_redis(Settings(redis_url=nobody))
    assert not probe.ok
    assert "cannot reach REDIS_URL" in probe.detail


# -- failures ------------------------------------------------------------------


async def test_a_primary_killed_its_replica_promoted_resyncs_its_channels(
    make_cluster_broker: ClusterFactory, private_cluster: RedisClusterProcesses
) -> None:
    broker = await make_cluster_broker(url=private_cluster.url)
    publisher = await make_cluster_broker(url=private_cluster.url, prefix=broker.prefix)
    doomed_channel, *other_channels = channels_on_every_shard(private_cluster, broker.prefix)
    doomed = private_cluster.owner_of(broker.slot(doomed_channel))
    async with (
        broker.subscribe(doomed_channel) as on_doomed,
        broker.subscribe(other_channels[0]) as elsewhere,
    ):
        doomed.kill()
        # Committed elsewhere; a failed publish is counted, never raised.
        await publisher.publish(doomed_channel, b"maybe lost")
        await publisher.publish(other_channels[0], b"unaffected")
        assert await receive(elsewhere) == Delivery(other_channels[0], b"unaffected")

        events = await receive_after_resync(on_doomed, b"after", publisher, FAILOVER_TIMEOUT)
        assert any(isinstance(event, Resync) for event in events), events
        assert events[-1] == Delivery(doomed_channel, b"after")
        resync_at = next(i for i, e in enumerate(events) if isinstance(e, Resync))
        # Nothing before the Resync but what the dying primary still sent.
        assert all(e == Delivery(doomed_channel, b"maybe lost") for e in events[:resync_at])

        await publisher.publish(other_channels[0], b"still live")
        assert await receive(elsewhere) == Delivery(other_channels[0], b"still live")
        assert broker.reroutes >= 1
        assert broker.healthy
    new_owner = private_cluster.owner_of(broker.slot(doomed_channel))
    assert new_owner is not doomed
    assert new_owner.is_primary()


async def test_a_slot_migrating_to_another_primary_resyncs_and_stays_live(
    make_cluster_broker: ClusterFactory, private_cluster: RedisClusterProcesses
) -> None:
    broker = await make_cluster_broker(url=private_cluster.url)
    publisher = await make_cluster_broker(url=private_cluster.url, prefix=broker.prefix)
    channel = org_channel("migrating")
    slot = broker.slot(channel)
    async with broker.subscribe(channel) as subscription:
        await publisher.publish(channel, b"before")
        assert await receive(subscription) == Delivery(channel, b"before")
        source = private_cluster.owner_of(slot)
        target = next(n for n in private_cluster.primaries() if n is not source)
        private_cluster.migrate_slot(slot, target)

        events = await receive_after_resync(subscription, b"after", publisher, RECEIVE_TIMEOUT * 5)
        assert events[0] == Resync()
        assert events[-1] == Delivery(channel, b"after")
        assert private_cluster.owner_of(slot) is target
        assert broker.reroutes >= 1


async def test_a_publisher_that_failed_tells_subscribers_they_missed_something(
    make_cluster_broker: ClusterFactory,
) -> None:
    """After a failover each worker learns the new slot map on its own: one
    may fail to publish after the subscribers elsewhere have re-subscribed
    and caught up. Once it can publish again, it says so on the channel."""
    subscriber = await make_cluster_broker()
    publisher = await make_cluster_broker(prefix=subscriber.prefix)
    async with subscriber.subscribe("conv:m") as subscription:
        publisher._publish_failed(ConnectionError("the shard was failing over"), ["conv:m"])
        assert await receive(subscription) == Resync()
        await publisher.publish("conv:m", b"next")
        assert await receive(subscription) == Delivery("conv:m", b"next")
        assert subscription.qsize() == 0
    assert publisher.publish_failures == 1


async def test_the_whole_cluster_down_reaches_no_publisher_and_resyncs_on_return(
    make_cluster_broker: ClusterFactory, private_cluster: RedisClusterProcesses
) -> None:
    broker = await make_cluster_broker(url=private_cluster.url)
    async with broker.subscribe("conv:all-down") as subscription:
        for node in private_cluster.nodes:
            node.kill()
        await broker.publish("conv:all-down", b"lost")  # stored elsewhere; must not raise
        await broker.publish_many([("conv:all-down", b"lost too")])
        assert broker.publish_failures == 2
        assert not await broker.ping()
        started = time.monotonic()
        async with broker.subscribe("conv:during") as during:
            assert time.monotonic() - started < RECEIVE_TIMEOUT
            for node in private_cluster.nodes:
                node.start()  # same ports and nodes.conf: the same cluster
            await asyncio.to_thread(private_cluster.wait_healthy)
            for sub in (subscription, during):
                events = await receive_after_resync(sub, b"back", broker, FAILOVER_TIMEOUT)
                assert Resync() in events
                assert events[-1] == Delivery(sub.channel, b"back")
    assert broker.healthy
