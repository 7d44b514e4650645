"""A worker always stops within its graceful timeout, also after Redis
stalled (issue 16 item 4): no room swallows its cancellation, and every
broker subscription a room held is released when the room goes.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.e2e.conftest import OpenPeer, StartServers
from tests.e2e.servers import HostApi, Peer, RedisProcess, Room, new_room, send_until_acked
from tests.waits import eventually_async

pytestmark = pytest.mark.slow

# The default CHAT shutdown grace (settings.shutdown_grace_seconds).
GRACE_SECONDS = 20.0
# Longer than the broker's socket timeout (5 s): every timeout in the pub/sub
# path fires while Redis is stopped.
STALL_SECONDS = 7.0
ROOMS = 6
RELEASE_WITHIN = 10.0


async def test_sigterm_ends_the_worker_in_time_after_a_redis_stall(
    start_servers: StartServers, private_redis: RedisProcess, open_peer: OpenPeer
) -> None:
    cluster = start_servers(1, redis_url=private_redis.url)
    server = cluster.a
    prefix = server.env["CHAT_REDIS_PREFIX"]
    host = HostApi(server.url)
    # An organisation per room: its channel carries the room's events.
    orgs = [f"org-{uuid.uuid4().hex[:10]}" for _ in range(ROOMS)]
    try:
        rooms: list[Room] = [await new_room(host, org=org) for org in orgs]
    finally:
        await host.aclose()
    staying: list[Peer] = []
    leaving: list[Peer] = []
    senders: list[tuple[Peer, str]] = []
    for n, room in enumerate(rooms):
        staff = await open_peer(f"staff{n}", room.staff_cookie, [server.ws_url])
        candidate = await open_peer(f"cand{n}", room.candidate_cookie, [server.ws_url])
        await staff.subscribe(room.conversation, after=0)
        await candidate.subscribe(room.conversation, after=0)
        (staying if n % 2 == 0 else leaving).extend([staff, candidate])
        if n % 2 == 0:
            senders.append((staff, room.conversation))

    # Redis stalls while sends publish, rooms are joined and rooms are left.
    private_redis.pause()
    try:
        deadline = time.monotonic() + 40
        sends = [
            asyncio.create_task(
                send_until_acked(peer, conversation, "stalled", str(uuid.uuid4()), deadline)
            )
            for peer, conversation in senders
        ]
        late = await open_peer("late", rooms[1].staff_cookie, [server.ws_url])
        joining = asyncio.create_task(late.subscribe(rooms[1].conversation, after=0, within=30))
        # The scenario: Redis stays stalled for STALL_SECONDS, with rooms left halfway.
        await asyncio.sleep(STALL_SECONDS / 2)
        for peer in leaving:
            await peer.close()
        await asyncio.sleep(STALL_SECONDS / 2)
    finally:
        private_redis.resume()
    await asyncio.wait_for(asyncio.gather(*sends), 40)
    await joining

    # Rooms whose members all left released their Redis subscriptions; the
    # others still hold theirs.
    gone = {f"{prefix}org:{orgs[n]}" for n in range(1, ROOMS, 2)} - {f"{prefix}org:{orgs[1]}"}
    await eventually_async(
        lambda: not gone & set(private_redis.channels(f"{prefix}*")),
        within=RELEASE_WITHIN,
        what=lambda: f"released: still {private_redis.channels(f'{prefix}*')}",
    )

    took = server.terminate()
    assert took < GRACE_SECONDS, cluster.logs()
