"""The broker contract (SPEC sections 3 and 5), run against memory and real Redis.

Waits are bounded: every receive has a timeout, and "nothing else arrived" is
established with a fence, a message on another channel published afterwards,
which arrives only after everything published before it was dispatched.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from chatserver.broker import (
    RESYNC,
    Broker,
    Delivery,
    Event,
    MemoryBroker,
    Resync,
    Subscription,
    SubscriptionClosed,
    broker_from_url,
)
from chatserver.broker.redis import RedisBroker
from chatserver.settings import SettingsError
from tests.e2e.servers import RedisProcess
from tests.waits import eventually_async

# The fixtures live in conftest.py, which tests cannot import by a stable
# module name; these describe what the tests use of them.
SHARED_REDIS_URL = "redis://127.0.0.1:6379"
BrokerFactory = Callable[..., Awaitable[Broker]]
RedisFactory = Callable[..., Awaitable[RedisBroker]]


# Generous for a loopback round trip, short enough to keep a failing test quick.
RECEIVE_TIMEOUT = 2.0
# Recovery after a Redis restart: reconnect backoff is capped at 0.2 s in tests.
RECOVERY_TIMEOUT = 5.0
# Redis processes an UNSUBSCRIBE within this.
UNSUBSCRIBE_WITHIN = 3.0


async def receive(subscription: Subscription, within: float = RECEIVE_TIMEOUT) -> Event:
    async with asyncio.timeout(within):
        return await subscription.get()


async def fence(broker: Broker, fence_subscription: Subscription) -> None:
    """Return once everything published before has reached local subscriptions."""
    await broker.publish(fence_subscription.channel, b"fence")
    assert await receive(fence_subscription) == Delivery(fence_subscription.channel, b"fence")


async def test_published_payload_reaches_subscriber(broker: Broker) -> None:
    payload = b'{"type": "message"}\x00\xff'
    async with broker.subscribe("conv:a") as subscription:
        await broker.publish("conv:a", payload)
        assert await receive(subscription) == Delivery("conv:a", payload)


async def test_messages_arrive_in_publish_order(broker: Broker) -> None:
    payloads = [str(i).encode() for i in range(500)]
    async with broker.subscribe("conv:a") as subscription:
        for payload in payloads:
            await broker.publish("conv:a", payload)
        received = [await receive(subscription) for _ in payloads]
    assert received == [Delivery("conv:a", p) for p in payloads]


async def test_every_subscriber_of_a_channel_receives(broker: Broker) -> None:
    async with (
        broker.subscribe("conv:a") as first,
        broker.subscribe("conv:a") as second,
        broker.subscribe("conv:a") as third,
    ):
        await broker.publish("conv:a", b"hello")
        for subscription in (first, second, third):
            assert await receive(subscription) == Delivery("conv:a", b"hello")


async def test_leaving_stops_delivery_and_ends_the_subscription(broker: Broker) -> None:
    async with broker.subscribe("conv:a") as staying:
        async with broker.subscribe("conv:a") as leaving:
            assert leaving.channel == "conv:a"
        await broker.publish("conv:a", b"after")
        assert await receive(staying) == Delivery("conv:a", b"after")
    with pytest.raises(SubscriptionClosed):
        await leaving.get()
    assert [event async for event in leaving] == []


async def test_channels_are_isolated(broker: Broker) -> None:
    async with broker.subscribe("conv:a") as a, broker.subscribe("conv:b") as b:
        await broker.publish("conv:a", b"for a")
        await broker.publish("conv:b", b"for b")
        assert await receive(a) == Delivery("conv:a", b"for a")
        assert await receive(b) == Delivery("conv:b", b"for b")
        async with broker.subscribe("fence") as fence_subscription:
            await fence(broker, fence_subscription)
        assert (a.qsize(), b.qsize()) == (0, 0)


async def test_publish_many_delivers_the_batch_in_order(broker: Broker) -> None:
    batch = [("conv:a", b"a1"), ("org:x", b"x1"), ("conv:a", b"a2"), ("org:x", b"x2")]
    async with broker.subscribe("conv:a") as a, broker.subscribe("org:x") as x:
        await broker.publish_many(batch)
        await broker.publish_many([])
        assert [await receive(a), await receive(a)] == [
            Delivery("conv:a", b"a1"),
            Delivery("conv:a", b"a2"),
        ]
        assert [await receive(x), await receive(x)] == [
            Delivery("org:x", b"x1"),
            Delivery("org:x", b"x2"),
        ]


async def test_overflow_replaces_the_backlog_with_a_resync(make_broker: BrokerFactory) -> None:
    broker = await make_broker(queue_size=4)
    async with broker.subscribe("conv:a") as slow, broker.subscribe("fence") as fence_sub:
        for i in range(20):
            await broker.publish("conv:a", str(i).encode())
        await fence(broker, fence_sub)
        backlog = [await receive(slow) for _ in range(slow.qsize())]
    assert 1 <= len(backlog) <= 4
    assert backlog[0] == RESYNC
    assert backlog[-1] == Delivery("conv:a", b"19")
    assert broker.overflows >= 1


async def test_disconnect_ends_open_subscriptions(broker: Broker) -> None:
    received: list[Event] = []
    first_received = asyncio.Event()
    async with broker.subscribe("conv:a") as subscription:

        async def consume() -> None:
            async for event in subscription:
                received.append(event)
                first_received.set()

        consumer = asyncio.create_task(consume())
        await broker.publish("conv:a", b"before")
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await first_received.wait()
        await broker.disconnect()
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            await consumer
        with pytest.raises(SubscriptionClosed):
            await subscription.get()
    assert received == [Delivery("conv:a", b"before")]


async def test_a_working_backend_is_healthy(broker: Broker) -> None:
    assert await broker.ping()
    assert broker.healthy
    assert broker.publish_failures == 0


# -- choosing a backend ------------------------------------------------------


def test_url_chooses_the_backend() -> None:
    assert isinstance(broker_from_url(None), MemoryBroker)
    assert isinstance(broker_from_url(""), MemoryBroker)
    assert isinstance(broker_from_url("memory://", queue_size=8), MemoryBroker)
    for url in ("redis://127.0.0.1:6379/0", "rediss://cache.example:6380", "unix:///tmp/r.sock"):
        chosen = broker_from_url(url, prefix="p:")
        assert isinstance(chosen, RedisBroker)
        assert chosen.prefix == "p:"
    with pytest.raises(SettingsError, match="amqp"):
        broker_from_url("amqp://127.0.0.1")


def test_redis_backend_is_imported_only_when_chosen() -> None:
    probe = (
        "import sys; from chatserver.broker import broker_from_url; broker_from_url('');"
        "assert 'chatserver.broker.redis' not in sys.modules;"
        "assert 'redis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=30)


# -- Redis specifics ---------------------------------------------------------


async def test_prefixes_isolate_deployments_on_one_redis(
    make_redis_broker: RedisFactory,
) -> None:
    ours = await make_redis_broker()
    same_prefix = await make_redis_broker(prefix=ours.prefix)
    other = await make_redis_broker()
    async with (
        same_prefix.subscribe("conv:a") as peer,
        other.subscribe("conv:a") as stranger,
        other.subscribe("fence") as fence_sub,
    ):
        await ours.publish("conv:a", b"ours")
        assert await receive(peer) == Delivery("conv:a", b"ours")
        await fence(other, fence_sub)
        assert stranger.qsize() == 0


async def test_redis_unsubscribes_when_the_last_local_subscriber_leaves(
    make_redis_broker: RedisFactory,
) -> None:
    broker = await make_redis_broker()
    wire = broker.prefix + "conv:a"
    observer = Redis.from_url(SHARED_REDIS_URL)
    try:

        async def unsubscribed() -> bool:
            return not await _subscribers(observer, wire)

        async with broker.subscribe("conv:a"), broker.subscribe("conv:a"):
            assert await _subscribers(observer, wire) == 1  # one connection per process
        # UNSUBSCRIBE is sent by the broker's writer task, just after exit.
        await eventually_async(unsubscribed, within=UNSUBSCRIBE_WITHIN, what="the UNSUBSCRIBE")
        assert await _subscribers(observer, wire) == 0
    finally:
        await observer.aclose()


async def _subscribers(client: Redis, wire_channel: str) -> int:
    counts = await client.pubsub_numsub(wire_channel)
    return int(counts[0][1])


async def test_redis_outage_pauses_then_resyncs_every_subscription(
    make_redis_broker: RedisFactory, private_redis: RedisProcess
) -> None:
    broker = await make_redis_broker(url=private_redis.url)
    async with broker.subscribe("conv:a") as subscription:
        private_redis.kill()

        await broker.publish("conv:a", b"lost")  # committed elsewhere; must not raise
        await broker.publish_many([("conv:a", b"lost too")])
        assert broker.publish_failures == 2
        assert not broker.healthy
        assert not await broker.ping()

        # Subscribing while Redis is down does not hang; it resyncs on recovery.
        started = time.monotonic()
        async with broker.subscribe("conv:b") as during_outage:
            assert time.monotonic() - started < RECEIVE_TIMEOUT

            private_redis.start()
            assert await receive(subscription, RECOVERY_TIMEOUT) == RESYNC
            assert await receive(during_outage, RECOVERY_TIMEOUT) == RESYNC
            assert broker.healthy

            await broker.publish("conv:a", b"live again")
            await broker.publish("conv:b", b"live too")
            assert await receive(subscription) == Delivery("conv:a", b"live again")
            assert await receive(during_outage) == Delivery("conv:b", b"live too")
    assert broker.reconnects >= 1


# The health check's interval in the tests below: short, so silence shows soon.
HEALTH_CHECK = 0.2


async def test_a_redis_that_goes_silent_is_noticed_and_resyncs_when_it_answers(
    make_redis_broker: RedisFactory, private_redis: RedisProcess
) -> None:
    """A stalled Redis sends no RST: only the health check finds it (an
    interval of silence sends a PING, a second one ends the connection)."""
    broker = await make_redis_broker(url=private_redis.url, health_check_interval=HEALTH_CHECK)
    async with broker.subscribe("conv:a") as subscription:
        private_redis.pause()
        try:
            await eventually_async(
                lambda: not broker.healthy,
                within=RECOVERY_TIMEOUT,
                what="the broker noticed the silent Redis",
            )
        finally:
            private_redis.resume()
        assert await receive(subscription, RECOVERY_TIMEOUT) == RESYNC
        await broker.publish("conv:a", b"answering again")
        assert await receive(subscription) == Delivery("conv:a", b"answering again")
    assert broker.reconnects >= 1


async def test_a_busy_connection_is_never_taken_for_a_silent_one(
    make_redis_broker: RedisFactory, private_redis: RedisProcess
) -> None:
    """Messages arriving through many health-check intervals, and the
    interval's timer cancelling reads among them: nothing lost or doubled,
    no reconnect."""
    broker = await make_redis_broker(url=private_redis.url, health_check_interval=HEALTH_CHECK)
    sent: list[bytes] = []
    got: list[bytes] = []
    async with broker.subscribe("conv:a") as subscription:
        deadline = time.monotonic() + 5 * HEALTH_CHECK
        while time.monotonic() < deadline and len(sent) < 5000:
            payload = str(len(sent)).encode()
            sent.append(payload)
            await broker.publish("conv:a", payload)
            await asyncio.sleep(0.001)
        while len(got) < len(sent):
            event = await receive(subscription)
            assert isinstance(event, Delivery)
            got.append(event.payload)
    assert got == sent
    assert broker.reconnects == 0


async def test_redis_dropping_the_connection_triggers_a_resync(
    make_redis_broker: RedisFactory, private_redis: RedisProcess
) -> None:
    broker = await make_redis_broker(url=private_redis.url)
    admin = Redis.from_url(private_redis.url)
    try:
        async with broker.subscribe("conv:a") as subscription:
            assert await admin.client_kill_filter(_type="pubsub") == 1
            event = await receive(subscription, RECOVERY_TIMEOUT)
            assert isinstance(event, Resync)
            await broker.publish("conv:a", b"after reset")
            assert await receive(subscription) == Delivery("conv:a", b"after reset")
    finally:
        await admin.aclose()


# A crowd of rooms subscribing at once (a worker's clients reconnecting).
CROWD_CHANNELS = 2000
CROWD_WITHIN = 10.0


async def _command_calls(client: Redis, command: str) -> int:
    stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def test_redis_batches_a_crowds_subscribes_and_unsubscribes(
    make_redis_broker: RedisFactory, private_redis: RedisProcess
) -> None:
    """Issue 10 item 3: thousands of channels subscribed at once are sent as a
    few SUBSCRIBE commands, confirmed together rather than one by one, and
    released the same way."""
    broker = await make_redis_broker(url=private_redis.url)
    observer = Redis.from_url(private_redis.url)
    try:
        subscribed = 0
        everyone_subscribed = asyncio.Event()
        release = asyncio.Event()

        async def member(n: int) -> None:
            nonlocal subscribed
            async with broker.subscribe(f"conv:{n}"):
                subscribed += 1
                if subscribed == CROWD_CHANNELS:
                    everyone_subscribed.set()
                await release.wait()

        tasks = [asyncio.create_task(member(n)) for n in range(CROWD_CHANNELS)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone_subscribed.wait(), CROWD_WITHIN)
        assert subscribed == CROWD_CHANNELS, subscribed
        assert len(await observer.pubsub_channels(broker.prefix + "*")) == CROWD_CHANNELS
        # Merged: a few hundred channels per command, never one per channel.
        assert await _command_calls(observer, "subscribe") <= CROWD_CHANNELS // 100
        await broker.publish("conv:7", b"still live")
        release.set()
        await asyncio.gather(*tasks)

        async def none_left() -> bool:
            return not await observer.pubsub_channels(broker.prefix + "*")

        await eventually_async(
            none_left, within=UNSUBSCRIBE_WITHIN * 10, what="the crowd's UNSUBSCRIBEs"
        )
        assert await observer.pubsub_channels(broker.prefix + "*") == []
        assert await _command_calls(observer, "unsubscribe") <= CROWD_CHANNELS // 100
    finally:
        await observer.aclose()
