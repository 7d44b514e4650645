"""What an idle person room costs the worker's heap (issue 10 item 5).

Every connected person has a `PersonRoom` on their worker, thousands of
idle ones; the load test's idle mode measures a whole socket by RSS, which
is noisy to a kilobyte. This measures the room alone with tracemalloc: N
rooms, each with one candidate's connection holding one application (so
a tap of one organisation's stream, as a candidate's bell has), on the
Redis broker, settled (their channels confirmed), and prints the bytes
allocated per room, with the files that allocated most.

    PYTHONPATH=. .venv/bin/python scripts/bench_feeds.py
    PYTHONPATH=. .venv/bin/python scripts/bench_feeds.py --rooms 5000

Run it with another checkout first on PYTHONPATH to compare versions. The
Redis is the machine's (127.0.0.1:6379, under a unique prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tracemalloc
import uuid

from chatserver.broker.redis import RedisBroker
from chatserver.chat import events
from chatserver.chat.identity import Viewer
from chatserver.chat.ratelimit import TokenBucket
from chatserver.realtime.connection import Connection
from chatserver.realtime.feeds import PersonRoom
from chatserver.realtime.streams import OrgStreams
from chatserver.roles import Role

SHARED_REDIS = "redis://127.0.0.1:6379"
# Long enough for Redis to confirm every SUBSCRIBE on a loaded machine.
SETTLE_SECONDS = 2.0
TOP_FILES = 6


def _kick(conn: Connection) -> None:
    """Nobody is slow here: nothing is published."""


async def measure(rooms: int) -> None:
    broker = RedisBroker(SHARED_REDIS, prefix=f"bench-feeds-{uuid.uuid4().hex[:8]}:")
    await broker.connect()
    people = [
        Connection(
            Viewer(
                kind=Role.CANDIDATE,
                id=f"p{i}",
                name="P",
                timezone="UTC",
                application_ids=(f"app-{i}",),
                application_orgs=("org-1",),
            ),
            16,
            TokenBucket(1.0, 1, 0.0),
            "ticket",
        )
        for i in range(rooms)
    ]
    channels = [events.person_channel("candidate", f"p{i}") for i in range(rooms)]
    streams = OrgStreams(broker)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    opened = []
    for channel, conn in zip(channels, people, strict=True):
        room = PersonRoom(channel, broker, streams, _kick)
        room.join(conn)
        opened.append(room)
    await asyncio.sleep(SETTLE_SECONDS)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = after.compare_to(before, "filename")
    total = sum(stat.size_diff for stat in stats)
    print(f"{rooms} idle person rooms: {total / rooms:.0f} B each")
    for stat in stats[:TOP_FILES]:
        print(f"  {stat.size_diff / rooms:6.0f} B  {stat.traceback[0].filename}")
    for room in opened:
        room.stop()
    await streams.stop(SETTLE_SECONDS)
    await broker.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(measure(args.rooms))


if __name__ == "__main__":
    main()
