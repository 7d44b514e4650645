"""Two `chatserver serve` processes on a private Redis Cluster (three
primaries, three replicas) and PostgreSQL: live delivery across workers with
conversations on every shard, a primary SIGKILLed mid-stream (its replica
promoted), and a live conversation's slot migrated to another primary.

Every subscriber ends with seq 1..N once and in order, equal to the
database; every acknowledged message is stored exactly once. Rooms that may
have missed live messages catch up from the database on Resync, as after a
single-Redis outage. All waits are bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.crc import key_slot

from chatserver.broker.shards import wire_channel
from chatserver.chat.events import org_channel
from tests.e2e.conftest import Cluster, OpenPeer
from tests.e2e.servers import (
    HostApi,
    Peer,
    PgDatabase,
    Room,
    ServerProcess,
    new_room,
    send_until_acked,
    start_all,
)
from tests.redis_cluster import ClusterNode, RedisClusterProcesses
from tests.waits import eventually_async

pytestmark = pytest.mark.slow

# A failover takes a few seconds (1 s node timeout, then the election, then
# the workers' reconnect backoff); catching up after it is one database read.
CATCH_UP_WITHIN = 30.0
SENDS_WITHIN = 45.0
# Pause between sends of the steady streams, so a fault lands mid-stream.
STREAM_PAUSE = 0.005
# Rooms made until every shard has one; three shards need about six.
MAX_ROOMS = 40


@dataclass
class ClusterDeployment:
    redis: RedisClusterProcesses
    servers: Cluster
    prefix: str
    # Each room's organisation, whose channel carries its events.
    orgs: dict[str, str] = field(default_factory=dict)

    async def new_room(self, host: HostApi) -> Room:
        org = f"org-{uuid.uuid4().hex[:10]}"
        room = await new_room(host, org=org)
        self.orgs[room.conversation] = org
        return room

    def shard_of(self, conversation: str) -> ClusterNode:
        return self.redis.owner_of(self.slot_of(conversation))

    def slot_of(self, conversation: str) -> int:
        channel = wire_channel(self.prefix, org_channel(self.orgs[conversation]))
        return key_slot(channel.encode())


@pytest.fixture(scope="module")
def deployment(pg_template: str, logs: Path) -> Iterator[ClusterDeployment]:
    redis = RedisClusterProcesses(logs).start()
    db = PgDatabase().create(template=pg_template)
    prefix = f"e2e-{uuid.uuid4().hex[:10]}:"
    servers = [
        ServerProcess(logs, database_url=db.url, redis_url=redis.url, prefix=prefix)
        for _ in range(2)
    ]
    try:
        yield ClusterDeployment(redis, Cluster(db, start_all(servers)), prefix)
    finally:
        for server in servers:
            server.stop()
        db.drop()
        redis.stop()


@pytest.fixture
async def host(deployment: ClusterDeployment) -> AsyncIterator[HostApi]:
    client = HostApi(deployment.servers.a.url)
    try:
        yield client
    finally:
        await client.aclose()


async def rooms_on_every_shard(deployment: ClusterDeployment, host: HostApi) -> list[Room]:
    """One room per primary, so the streams below cross all three shards."""
    found: dict[int, Room] = {}
    for _ in range(MAX_ROOMS):
        room = await deployment.new_room(host)
        found.setdefault(deployment.shard_of(room.conversation).port, room)
        if len(found) == len(deployment.redis.primaries()):
            return list(found.values())
    raise AssertionError(f"{MAX_ROOMS} rooms did not cover every shard")


@dataclass
class Lanes:
    """A room's tabs: a sender on each worker, a watcher on each worker."""

    room: Room
    senders: list[Peer]
    peers: list[Peer]


async def open_lanes(deployment: ClusterDeployment, room: Room, open_peer: OpenPeer) -> Lanes:
    a, b = deployment.servers.a.ws_url, deployment.servers.b.ws_url
    staff = await open_peer("staff@A", room.staff_cookie, [a, b])
    candidate = await open_peer("candidate@B", room.candidate_cookie, [b, a])
    peers = [
        staff,
        candidate,
        await open_peer("staff-tab@B", room.staff_cookie, [b, a]),
        await open_peer("candidate-tab@A", room.candidate_cookie, [a, b]),
    ]
    for peer in peers:
        await peer.subscribe(room.conversation, after=0)
    return Lanes(room, [staff, candidate], peers)


async def stream(
    peer: Peer, conversation: str, count: int, label: str, acked: dict[str, dict[str, object]]
) -> None:
    deadline = time.monotonic() + SENDS_WITHIN
    for n in range(count):
        client_id = str(uuid.uuid4())
        acked[client_id] = await send_until_acked(
            peer, conversation, f"{label} {n}", client_id, deadline
        )
        await asyncio.sleep(STREAM_PAUSE)


async def wait_for_acks(acked: dict[str, dict[str, object]], count: int) -> None:
    """Until `count` sends are acknowledged; looked at every 10 ms, so that
    what the caller does next happens mid-stream."""
    await eventually_async(
        lambda: len(acked) >= count,
        within=SENDS_WITHIN,
        what=lambda: f"only {len(acked)} of {count} sends acknowledged",
        every=0.01,
    )


async def streams(every: list[Lanes], per_sender: int, acked: dict[str, dict[str, object]]) -> None:
    await asyncio.gather(
        *(
            stream(sender, lanes.room.conversation, per_sender, f"{sender.name} {i}", acked)
            for i, lanes in enumerate(every)
            for sender in lanes.senders
        )
    )


async def assert_everyone_has_the_database_view(
    deployment: ClusterDeployment,
    every: list[Lanes],
    per_room: int,
    acked: dict[str, dict[str, object]],
) -> None:
    stored_ids: dict[str, str] = {}
    for lanes in every:
        stored = deployment.servers.db.messages(lanes.room.conversation)
        assert [seq for seq, _, _ in stored] == list(range(1, per_room + 1))
        stored_ids.update({cid: mid for _, mid, cid in stored})
        view = [(seq, mid) for seq, mid, _ in stored]
        for peer in lanes.peers:
            await peer.wait_for_seq(lanes.room.conversation, per_room, within=CATCH_UP_WITHIN)
            assert peer.problems == [], deployment.servers.logs()
            assert peer.view(lanes.room.conversation) == view
    # Every acknowledgement names the one stored message of its client_id.
    assert stored_ids == {cid: message["id"] for cid, message in acked.items()}


async def test_senders_on_both_workers_reach_every_subscriber_on_every_shard(
    deployment: ClusterDeployment, host: HostApi, open_peer: OpenPeer
) -> None:
    rooms = await rooms_on_every_shard(deployment, host)
    every = [await open_lanes(deployment, room, open_peer) for room in rooms]
    per_sender = 30
    acked: dict[str, dict[str, object]] = {}
    await streams(every, per_sender, acked)
    await assert_everyone_has_the_database_view(deployment, every, 2 * per_sender, acked)


async def test_a_primary_killed_mid_stream_loses_and_doubles_nothing(
    deployment: ClusterDeployment, host: HostApi, open_peer: OpenPeer
) -> None:
    rooms = await rooms_on_every_shard(deployment, host)
    every = [await open_lanes(deployment, room, open_peer) for room in rooms]
    doomed = deployment.shard_of(rooms[0].conversation)
    per_sender = 40
    acked: dict[str, dict[str, object]] = {}

    async def kill_mid_stream() -> None:
        # Late in the streams: the doomed shard's last messages are sent
        # while its primary is down, so only a Resync brings them live.
        await wait_for_acks(acked, len(every) * 2 * per_sender - 40)
        doomed.kill()

    await asyncio.gather(kill_mid_stream(), streams(every, per_sender, acked))
    await assert_everyone_has_the_database_view(deployment, every, 2 * per_sender, acked)
    await asyncio.to_thread(deployment.redis.wait_healthy)
    promoted = deployment.shard_of(rooms[0].conversation)
    assert promoted is not doomed
    assert promoted.is_primary()


async def test_a_live_conversations_slot_migrating_loses_nothing(
    deployment: ClusterDeployment, host: HostApi, open_peer: OpenPeer
) -> None:
    room = await deployment.new_room(host)
    lanes = await open_lanes(deployment, room, open_peer)
    slot = deployment.slot_of(room.conversation)
    source = deployment.shard_of(room.conversation)
    target = next(node for node in deployment.redis.primaries() if node is not source)
    per_sender = 40
    acked: dict[str, dict[str, object]] = {}

    async def migrate_mid_stream() -> None:
        await wait_for_acks(acked, 2 * per_sender - 20)
        await asyncio.to_thread(deployment.redis.migrate_slot, slot, target)

    await asyncio.gather(migrate_mid_stream(), streams([lanes], per_sender, acked))
    assert deployment.shard_of(room.conversation) is target
    await assert_everyone_has_the_database_view(deployment, [lanes], 2 * per_sender, acked)
