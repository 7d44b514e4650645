"""Sends never wait on Redis (issue 16 item 3): with a private Redis stopped
by SIGSTOP, every send is acknowledged as soon as it is committed (the
publish is bounded by CHAT_PUBLISH_TIMEOUT), and once Redis runs again the
subscribers on both workers catch up from the database, each message once
and in order.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.conftest import OpenPeer, StartServers
from tests.e2e.servers import HostApi, RedisProcess, new_room

pytestmark = pytest.mark.slow

SENDS = 8
# Longer than the broker's socket timeout (5 s), so a send that waited on a
# publish would wait for that timeout at least.
STALL_SECONDS = 7.0
# The publish bound (0.5 s) and a commit, with slack for a loaded machine;
# far below the stall.
ACK_WITHIN = 2.5
CAUGHT_UP_WITHIN = 20.0


async def test_sends_are_acknowledged_while_redis_is_stalled(
    start_servers: StartServers, private_redis: RedisProcess, open_peer: OpenPeer
) -> None:
    cluster = start_servers(2, redis_url=private_redis.url)
    a, b = cluster.a, cluster.b
    host = HostApi(a.url)
    try:
        room = await new_room(host)
    finally:
        await host.aclose()
    sender = await open_peer("staff@A", room.staff_cookie, [a.ws_url])
    watchers = [
        await open_peer("candidate@A", room.candidate_cookie, [a.ws_url]),
        await open_peer("candidate@B", room.candidate_cookie, [b.ws_url]),
    ]
    for peer in [sender, *watchers]:
        await peer.subscribe(room.conversation, after=0)

    private_redis.pause()
    took: list[float] = []
    try:
        stalled_until = time.monotonic() + STALL_SECONDS
        for n in range(SENDS):
            started = time.monotonic()
            await sender.send(room.conversation, f"while Redis sleeps {n}", within=ACK_WITHIN)
            took.append(time.monotonic() - started)
        assert time.monotonic() < stalled_until, "the sends outlasted the stall: nothing shown"
        # The scenario: Redis stays stalled for all of STALL_SECONDS.
        await asyncio.sleep(max(0.0, stalled_until - time.monotonic()))
    finally:
        private_redis.resume()
    assert max(took) < ACK_WITHIN, took

    stored = [(seq, mid) for seq, mid, _ in cluster.db.messages(room.conversation)]
    assert [seq for seq, _ in stored] == list(range(1, SENDS + 1))
    for peer in watchers:
        await peer.wait_for_seq(room.conversation, SENDS, within=CAUGHT_UP_WITHIN)
    for peer in watchers:
        assert peer.problems == [], peer.problems
        assert peer.view(room.conversation) == stored
