"""Listeners (issue 10 item 5): a subscription without a queue or a task,
each payload handed to a callback from the broker's dispatch. Run against
every backend, like test_broker.py (whose cases these extend; kept apart to
keep each module under 350 lines).

What a listener must do as a queue subscription does: receive what is
published on its channel, share the channel's one wire subscription with
the others of this process, take it off the wire with the last of them,
and be subscribed again after the connection to Redis comes back. What it
must do besides: survive a callback that raises, and a callback that
releases listeners of the channel being dispatched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from chatserver.broker import (
    RESYNC,
    Broker,
    Delivery,
    Event,
    Listener,
    MemoryBroker,
    Subscription,
)
from chatserver.broker.cluster import ClusterBroker
from chatserver.broker.redis import RedisBroker
from chatserver.broker.shards import wire_channel
from tests.broker.test_broker import (
    RECEIVE_TIMEOUT,
    RECOVERY_TIMEOUT,
    UNSUBSCRIBE_WITHIN,
    RedisFactory,
    fence,
    receive,
)
from tests.e2e.servers import RedisProcess
from tests.waits import eventually_async

ClusterFactory = Callable[..., Awaitable[ClusterBroker]]


class Heard:
    """A listener's callback that records what it is handed and lets a test
    wait for a number of payloads."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._changed = asyncio.Event()

    def __call__(self, payload: bytes) -> None:
        self.payloads.append(payload)
        self._changed.set()

    async def at_least(self, count: int, within: float = RECEIVE_TIMEOUT) -> list[bytes]:
        async with asyncio.timeout(within):
            while len(self.payloads) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.payloads


async def routed_here(broker: Broker, channel: str) -> None:
    """Return once the channel is routed to this process: `listen` does not
    wait for Redis, but a queue subscription on the same channel enters only
    once Redis confirms it (and leaving it keeps the listener's)."""
    async with broker.subscribe(channel):
        pass


async def wire_subscribers(broker: Broker, channel: str) -> int:
    """PUBSUB NUMSUB (SHARDNUMSUB on the cluster) of the channel under the
    broker's own prefix; for the memory broker, whether it keeps the channel."""
    if isinstance(broker, MemoryBroker):
        return 1 if channel in broker._channels else 0
    if isinstance(broker, RedisBroker):
        observer = Redis.from_url(broker.url)
        try:
            [(_, count)] = await observer.pubsub_numsub(broker.prefix + channel)
        finally:
            await observer.aclose()
        return int(count)
    assert isinstance(broker, ClusterBroker)
    wire = wire_channel(broker.prefix, channel)
    node = broker._connected_client().get_node_from_key(wire)
    assert node is not None
    observer = Redis(host=node.host, port=int(node.port))
    try:
        [(_, count)] = await observer.pubsub_shardnumsub(wire)
    finally:
        await observer.aclose()
    return int(count)


async def test_a_listener_hands_each_payload_to_its_callback(broker: Broker) -> None:
    payloads = [str(i).encode() for i in range(50)]
    first, second = Heard(), Heard()
    listeners = [broker.listen("person:a", first), broker.listen("person:a", second)]
    await routed_here(broker, "person:a")
    async with broker.subscribe("person:a") as queued:
        for payload in payloads:
            await broker.publish("person:a", payload)
        assert await first.at_least(len(payloads)) == payloads
        assert await second.at_least(len(payloads)) == payloads
        assert [await receive(queued) for _ in payloads] == [
            Delivery("person:a", p) for p in payloads
        ]
    for listener in listeners:
        listener.release()


async def test_releasing_listeners_takes_the_channel_off_the_wire(broker: Broker) -> None:
    leaving, staying = Heard(), Heard()
    first = broker.listen("person:b", leaving)
    second = broker.listen("person:b", staying)
    await routed_here(broker, "person:b")
    assert await wire_subscribers(broker, "person:b") == 1  # one per process
    async with broker.subscribe("fence") as fence_sub:
        first.release()
        await broker.publish("person:b", b"after one left")
        assert await staying.at_least(1) == [b"after one left"]
        await fence(broker, fence_sub)
        assert leaving.payloads == []
        assert await wire_subscribers(broker, "person:b") == 1

        second.release()
        second.release()  # idempotent

        async def unsubscribed() -> bool:
            return not await wire_subscribers(broker, "person:b")

        await eventually_async(unsubscribed, within=UNSUBSCRIBE_WITHIN, what="the UNSUBSCRIBE")
        await broker.publish("person:b", b"nobody hears")
        await fence(broker, fence_sub)
    assert staying.payloads == [b"after one left"]
    if isinstance(broker, RedisBroker):
        observer = Redis.from_url(broker.url)
        try:
            assert await observer.pubsub_channels(broker.prefix + "*") == []
        finally:
            await observer.aclose()


async def test_a_callback_that_raises_is_logged_and_delivery_goes_on(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(payload: bytes) -> None:
        raise ValueError(f"cannot handle {payload!r}")

    heard = Heard()
    listeners = [broker.listen("person:c", broken), broker.listen("person:c", heard)]
    await routed_here(broker, "person:c")
    with caplog.at_level(logging.ERROR, logger="chatserver.broker"):
        async with broker.subscribe("person:c") as queued, broker.subscribe("fence") as fence_sub:
            await broker.publish("person:c", b"one")
            await broker.publish("person:c", b"two")
            assert await heard.at_least(2) == [b"one", b"two"]
            assert [await receive(queued), await receive(queued)] == [
                Delivery("person:c", b"one"),
                Delivery("person:c", b"two"),
            ]
            await fence(broker, fence_sub)  # the dispatch loop still runs
    failures = [r for r in caplog.records if "listener of person:c failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and r.exc_info[0] is ValueError for r in failures)
    for listener in listeners:
        listener.release()


async def test_a_callback_may_release_listeners_of_its_own_channel(broker: Broker) -> None:
    """As the hub does when a feed kicks a slow socket: the room leaves, its
    listener is released, in the middle of the channel's dispatch."""
    heard = Heard()
    others: list[Listener] = []

    def leave_all(payload: bytes) -> None:
        heard(payload)
        for listener in others:
            listener.release()

    releasing = broker.listen("person:d", leave_all)
    others.extend([broker.listen("person:d", Heard()) for _ in range(3)])
    others.append(releasing)
    await routed_here(broker, "person:d")
    async with broker.subscribe("fence") as fence_sub:
        await broker.publish("person:d", b"leave")
        assert await heard.at_least(1) == [b"leave"]
        await broker.publish("person:d", b"nobody hears")
        await fence(broker, fence_sub)

        async def unsubscribed() -> bool:
            return not await wire_subscribers(broker, "person:d")

        await eventually_async(unsubscribed, within=UNSUBSCRIBE_WITHIN, what="the UNSUBSCRIBE")
    assert heard.payloads == [b"leave"]


async def test_disconnect_ends_listeners(broker: Broker) -> None:
    heard = Heard()
    listener = broker.listen("person:e", heard)
    await routed_here(broker, "person:e")
    await broker.disconnect()
    assert listener.closed
    listener.release()  # after the broker is gone: nothing to do, no error
    assert heard.payloads == []


# -- after a reconnect --------------------------------------------------------


async def _heard_again(
    broker: Broker, drop: Callable[[], Awaitable[int]], probe: Subscription, heard: Heard
) -> None:
    """Drop the broker's pub/sub connection, wait until Redis routes the
    listener's channel here again, then publish on it: the listener hears
    it, and nothing else (the Resync the queue subscription gets is not
    handed to a listener)."""
    assert await wire_subscribers(broker, "person:f") == 1
    assert await drop() >= 1  # our pub/sub connection, gone
    assert await receive(probe, RECOVERY_TIMEOUT) == RESYNC

    async def subscribed_again() -> bool:
        return await wire_subscribers(broker, "person:f") == 1

    await eventually_async(subscribed_again, within=RECOVERY_TIMEOUT, what="the re-SUBSCRIBE")
    await broker.publish("person:f", b"after the reconnect")
    assert await heard.at_least(1, RECOVERY_TIMEOUT) == [b"after the reconnect"]


async def test_redis_subscribes_a_listener_again_after_a_reconnect(
    make_redis_broker: RedisFactory, private_redis: RedisProcess
) -> None:
    broker = await make_redis_broker(url=private_redis.url)
    heard = Heard()
    listener = broker.listen("person:f", heard)
    admin = Redis.from_url(private_redis.url)

    async def kill_pubsub() -> int:
        return int(await admin.client_kill_filter(_type="pubsub"))

    try:
        async with broker.subscribe("probe") as probe:
            await _heard_again(
                broker, lambda: admin.client_kill_filter(_type="pubsub"), probe, heard
            )
    finally:
        await admin.aclose()
    assert broker.reconnects >= 1
    listener.release()


async def test_the_cluster_subscribes_a_listener_again_after_its_link_drops(
    make_cluster_broker: ClusterFactory,
) -> None:
    broker = await make_cluster_broker()
    heard = Heard()
    listener = broker.listen("person:f", heard)
    await routed_here(broker, "person:f")
    node = broker._connected_client().get_node_from_key(wire_channel(broker.prefix, "person:f"))
    assert node is not None
    # A probe channel on the same primary: its Resync tells the link is back.
    probe_channel = next(
        name
        for name in (f"probe:{i}" for i in range(1000))
        if broker._connected_client().get_node_from_key(wire_channel(broker.prefix, name)) is node
    )
    admin = Redis(host=node.host, port=int(node.port))

    async def kill_pubsub() -> int:
        return int(await admin.client_kill_filter(_type="pubsub"))

    try:
        async with broker.subscribe(probe_channel) as probe:
            await _heard_again(
                broker, lambda: admin.client_kill_filter(_type="pubsub"), probe, heard
            )
    finally:
        await admin.aclose()
    listener.release()


async def test_a_route_hands_each_event_to_its_callback_once_live_and_leaves_with_its_context(
    broker: Broker,
) -> None:
    """`route` (an organisation stream's way in): entered once the channel
    is routed here, every payload goes to the callback from the broker's
    dispatch, and leaving takes the channel off the wire. (The Resync of a
    reconnect reaching the stream's rooms: tests/e2e.)"""
    events: list[Event] = []
    heard = Heard()

    def callback(event: Event) -> None:
        events.append(event)
        if isinstance(event, Delivery):
            heard(event.payload)

    payloads = [str(i).encode() for i in range(50)]
    async with broker.route("org:r", callback):
        # Entered: a publish now cannot be missed.
        for payload in payloads:
            await broker.publish("org:r", payload)
        assert await heard.at_least(len(payloads)) == payloads
        assert events == [Delivery("org:r", p) for p in payloads]

    async def unsubscribed() -> bool:
        return not await wire_subscribers(broker, "org:r")

    await eventually_async(unsubscribed, within=UNSUBSCRIBE_WITHIN, what="the UNSUBSCRIBE")
