"""Crowds on real processes (issue 10 item 3): a crowd of sockets connects,
subscribes and leaves, and the server still answers sends promptly; a worker
holding a crowd is SIGKILLed, its clients reconnect to the other at once,
and within 10 s every one is subscribed again with nothing acknowledged
lost or doubled.

The suite runs a crowd small enough for a loaded 2-core machine. The full
size of the issue is the same test with more sockets:

    TEST_CROWD_SOCKETS=5000 TEST_CROWD_CONVERSATIONS=2500 \\
        pytest tests/e2e/test_crowd.py
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import OpenPeer, StartServers
from tests.e2e.servers import HostApi, Peer, Room, new_room, send_until_acked
from tests.waits import eventually_async

pytestmark = pytest.mark.slow

SOCKETS = int(os.environ.get("TEST_CROWD_SOCKETS", "200"))
CONVERSATIONS = int(os.environ.get("TEST_CROWD_CONVERSATIONS", "20"))
# Sockets opening (or rooms being provisioned) at once, as a burst of
# browsers would.
CONCURRENCY = 50
# The bound for a reconnect storm.
RESUBSCRIBED_WITHIN = 10.0
# A send after the crowd left: acknowledged and delivered promptly.
PROMPT_WITHIN = 2.0
SENDS_WITHIN = 30.0
DELIVERED_WITHIN = 15.0


async def _provision(host: HostApi, count: int) -> list[Room]:
    rooms: list[Room] = []
    for start in range(0, count, CONCURRENCY):
        batch = range(start, min(start + CONCURRENCY, count))
        rooms.extend(await asyncio.gather(*(new_room(host) for _ in batch)))
    return rooms


async def _open_crowd(
    open_peer: OpenPeer, rooms: list[Room], urls: list[str], count: int, label: str
) -> list[tuple[Peer, str]]:
    """`count` sockets, alternately staff and candidate of each room in turn,
    each subscribed to its room's conversation."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(n: int) -> tuple[Peer, str]:
        room = rooms[n % len(rooms)]
        cookie = room.staff_cookie if (n // len(rooms)) % 2 == 0 else room.candidate_cookie
        async with sem:
            peer = await open_peer(f"{label}{n}", cookie, urls)
            await peer.subscribe(room.conversation, after=0, within=30)
        return peer, room.conversation

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def test_a_crowd_connects_and_leaves_then_sends_are_prompt(
    start_servers: StartServers, open_peer: OpenPeer
) -> None:
    cluster = start_servers(1)
    server = cluster.a
    host = HostApi(server.url)
    try:
        rooms = await _provision(host, CONVERSATIONS)
    finally:
        await host.aclose()
    crowd = await _open_crowd(open_peer, rooms, [server.ws_url], SOCKETS, "crowd")
    await asyncio.gather(*(peer.close() for peer, _ in crowd))

    # The server is not wedged: a new socket subscribes, sends are answered
    # and delivered promptly.
    room = rooms[0]
    watcher = await open_peer("watcher", room.staff_cookie, [server.ws_url])
    sender = await open_peer("sender", room.candidate_cookie, [server.ws_url])
    await watcher.subscribe(room.conversation, after=0, within=PROMPT_WITHIN)
    for n in range(10):
        started = time.monotonic()
        message = await sender.send(room.conversation, f"after the crowd {n}", within=PROMPT_WITHIN)
        await watcher.wait_for_seq(room.conversation, int(message["seq"]), within=PROMPT_WITHIN)
        assert time.monotonic() - started < PROMPT_WITHIN
    assert watcher.problems == []
    assert watcher.view(room.conversation) == [
        (seq, mid) for seq, mid, _ in cluster.db.messages(room.conversation)
    ]


async def test_a_killed_workers_crowd_resubscribes_on_the_other_within_10_s(
    start_servers: StartServers, open_peer: OpenPeer
) -> None:
    cluster = start_servers(2)
    a, b = cluster.a, cluster.b
    host = HostApi(b.url)
    try:
        rooms = await _provision(host, CONVERSATIONS)
    finally:
        await host.aclose()
    on_a = await _open_crowd(open_peer, rooms, [a.ws_url, b.ws_url], SOCKETS, "a")
    on_b = await _open_crowd(open_peer, rooms, [b.ws_url], len(rooms), "b")
    senders = [
        await open_peer(f"s{n}", r.candidate_cookie, [b.ws_url]) for n, r in enumerate(rooms[:4])
    ]
    acked: dict[str, dict[str, Any]] = {}
    stop = asyncio.Event()

    async def stream(peer: Peer, conversation: str) -> None:
        deadline = time.monotonic() + SENDS_WITHIN
        while not stop.is_set():
            client_id = str(uuid.uuid4())
            acked[client_id] = await send_until_acked(
                peer, conversation, "storm", client_id, deadline
            )
            await asyncio.sleep(0.05)  # pacing: a steady stream, not a flood

    streams = [
        asyncio.create_task(stream(peer, room.conversation))
        for peer, room in zip(senders, rooms, strict=False)
    ]
    await asyncio.sleep(0.5)  # the scenario: sends are under way when the worker dies
    a.kill()
    killed = time.monotonic()

    def behind() -> int:
        return sum(1 for p, _ in on_a if p.reconnects < 1 or not p.connected.is_set())

    await eventually_async(
        lambda: behind() == 0,
        within=RESUBSCRIBED_WITHIN,
        what=lambda: f"every socket resubscribed ({behind()} behind)",
    )
    resubscribed = time.monotonic() - killed
    await asyncio.sleep(0.5)  # the scenario: sends go on after the resubscribe
    stop.set()
    await asyncio.gather(*streams)

    for room in rooms:
        stored = cluster.db.messages(room.conversation)
        assert [seq for seq, _, _ in stored] == list(range(1, len(stored) + 1))
    stored_ids = {
        cid: mid for room in rooms for _, mid, cid in cluster.db.messages(room.conversation)
    }
    # Every acknowledged message is stored once, as acknowledged.
    assert {cid: m["id"] for cid, m in acked.items()} == {cid: stored_ids[cid] for cid in acked}
    assert len(stored_ids) == len(acked)
    views = {
        room.conversation: [(seq, mid) for seq, mid, _ in cluster.db.messages(room.conversation)]
        for room in rooms
    }
    for peer, conversation in [*on_a, *on_b]:
        expected = views[conversation]
        if expected:
            await peer.wait_for_seq(conversation, expected[-1][0], within=DELIVERED_WITHIN)
        assert peer.problems == []
        assert peer.view(conversation) == expected
    print(f"{len(on_a)} sockets resubscribed on the other worker in {resubscribed:.1f} s")
