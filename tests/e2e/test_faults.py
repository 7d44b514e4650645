"""SPEC section 3 when something breaks: a worker killed mid-stream, Redis
restarted mid-stream, the database gone. Acknowledged means stored; nothing
is lost, doubled or reordered, and clients that follow the protocol (resume
with `after`, retry with the same client_id) end up with the database's view.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.conftest import Cluster, OpenPeer, StartServers
from tests.e2e.servers import (
    FrameError,
    Peer,
    RedisProcess,
    Room,
    ServerProcess,
    send_until_acked,
)
from tests.waits import eventually_async

pytestmark = pytest.mark.slow

MakeRoom = Callable[[ServerProcess], Awaitable[Room]]
# Bounds of the waits below. A reconnect to the surviving worker takes
# milliseconds; a Redis reconnect backs off for at most 5 s (broker setting).
CATCH_UP_WITHIN = 20.0
SENDS_WITHIN = 40.0
# Pause between sends of the steady streams, so a fault lands mid-stream.
STREAM_PAUSE = 0.005


def database_view(cluster: Cluster, conversation: str) -> list[tuple[int, str]]:
    return [(seq, mid) for seq, mid, _ in cluster.db.messages(conversation)]


async def stream(
    peer: Peer, conversation: str, count: int, label: str, acked: dict[str, dict[str, object]]
) -> None:
    """Send `count` messages one after another, each retried with its own
    client_id until acknowledged."""
    deadline = time.monotonic() + SENDS_WITHIN
    for n in range(count):
        client_id = str(uuid.uuid4())
        acked[client_id] = await send_until_acked(
            peer, conversation, f"{label} {n}", client_id, deadline
        )
        await asyncio.sleep(STREAM_PAUSE)


async def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(
    start_servers: StartServers, make_room: MakeRoom, open_peer: OpenPeer
) -> None:
    cluster = start_servers(2)
    a, b = cluster.a.ws_url, cluster.b.ws_url
    room = await make_room(cluster.b)
    # Senders and subscribers on both workers; each reconnects to the other
    # server when its own goes away.
    staff = await open_peer("staff@A", room.staff_cookie, [a, b])
    candidate = await open_peer("candidate@B", room.candidate_cookie, [b, a])
    watcher_a = await open_peer("staff-tab@A", room.staff_cookie, [a, b])
    watcher_b = await open_peer("candidate-tab@B", room.candidate_cookie, [b, a])
    peers = [staff, candidate, watcher_a, watcher_b]
    for peer in peers:
        await peer.subscribe(room.conversation, after=0)
    per_lane, lanes = 40, 4
    acked: dict[str, dict[str, object]] = {}

    async def kill_a_mid_stream() -> None:
        # Looked at every 10 ms, so that the kill lands mid-stream.
        await eventually_async(
            lambda: len(acked) >= 60,
            within=SENDS_WITHIN,
            what="60 sends before the kill",
            every=0.01,
        )
        cluster.a.kill()

    await asyncio.gather(
        kill_a_mid_stream(),
        *(stream(staff, room.conversation, per_lane, f"staff {i}", acked) for i in range(lanes)),
        *(stream(candidate, room.conversation, per_lane, f"cand {i}", acked) for i in range(lanes)),
    )

    assert not cluster.a.alive()
    assert staff.reconnects >= 1
    assert watcher_a.reconnects >= 1
    stored = cluster.db.messages(room.conversation)
    total = 2 * lanes * per_lane
    # Every send was eventually acknowledged, exactly once in the database,
    # and each acknowledgement names the stored message.
    assert [seq for seq, _, _ in stored] == list(range(1, total + 1))
    assert {cid: mid for _, mid, cid in stored} == {cid: m["id"] for cid, m in acked.items()}
    for peer in peers:
        await peer.wait_for_seq(room.conversation, total, within=CATCH_UP_WITHIN)
        assert peer.problems == []
        assert peer.view(room.conversation) == database_view(cluster, room.conversation)


async def test_subscribers_catch_up_without_gaps_after_redis_restarts_mid_stream(
    start_servers: StartServers,
    private_redis: RedisProcess,
    make_room: MakeRoom,
    open_peer: OpenPeer,
) -> None:
    cluster = start_servers(2, redis_url=private_redis.url)
    room = await make_room(cluster.a)
    sender = await open_peer("candidate@B", room.candidate_cookie, [cluster.b.ws_url])
    subscribers = [
        await open_peer("staff@A", room.staff_cookie, [cluster.a.ws_url]),
        await open_peer("staff-tab@B", room.staff_cookie, [cluster.b.ws_url]),
        sender,
    ]
    for peer in subscribers:
        await peer.subscribe(room.conversation, after=0)
    acked: dict[str, dict[str, object]] = {}
    phase = 40

    await stream(sender, room.conversation, phase, "before", acked)
    private_redis.kill()
    await stream(sender, room.conversation, phase, "during", acked)
    private_redis.start()
    await stream(sender, room.conversation, phase, "after", acked)

    total = 3 * phase
    stored = database_view(cluster, room.conversation)
    assert [seq for seq, _ in stored] == list(range(1, total + 1))
    for peer in subscribers:
        await peer.wait_for_seq(room.conversation, total, within=CATCH_UP_WITHIN)
        assert peer.problems == []
        assert peer.view(room.conversation) == stored


async def test_with_the_database_gone_sends_answer_unavailable_and_nothing_is_acked(
    start_servers: StartServers, make_room: MakeRoom, open_peer: OpenPeer
) -> None:
    cluster = start_servers(1)
    server = cluster.servers[0]
    room = await make_room(server)
    staff = await open_peer("staff", room.staff_cookie, [server.ws_url])
    candidate = await open_peer("candidate", room.candidate_cookie, [server.ws_url])
    await candidate.subscribe(room.conversation, after=0)
    await staff.send(room.conversation, "before the outage")
    retries = [str(uuid.uuid4()) for _ in range(3)]

    cluster.db.refuse_connections()
    try:
        for client_id in retries:
            with pytest.raises(FrameError) as refused:
                await staff.send(room.conversation, "during the outage", client_id, within=15)
            assert refused.value.code == "unavailable"
            assert refused.value.frame.get("client_id") == client_id
    finally:
        cluster.db.accept_connections()

    assert [seq for seq, _, _ in cluster.db.messages(room.conversation)] == [1]
    # The same client_ids, retried once the database is back, are new
    # messages: nothing of them had been stored.
    deadline = time.monotonic() + CATCH_UP_WITHIN
    for client_id in retries:
        message = await send_until_acked(staff, room.conversation, "retried", client_id, deadline)
        assert message["body"] == "retried"
    stored = database_view(cluster, room.conversation)
    assert [seq for seq, _ in stored] == [1, 2, 3, 4]
    await candidate.wait_for_seq(room.conversation, 4, within=CATCH_UP_WITHIN)
    assert candidate.problems == []
    assert candidate.view(room.conversation) == stored
