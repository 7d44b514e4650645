"""Per-person limits on a Redis Cluster (issue 9 item 9): each person's
keys carry the person's hash tag, so the Lua scripts run on one shard, and
two workers share each limit whichever shard a person lands on."""

from __future__ import annotations

import uuid

from chatserver.chat.limits import RedisLimits
from chatserver.errors import ChatError
from chatserver.settings import Settings
from tests.redis_cluster import RedisClusterProcesses

PEOPLE = 12  # enough names to land on every shard of three


async def test_two_workers_share_each_persons_limits_on_a_cluster(
    redis_cluster: RedisClusterProcesses,
) -> None:
    settings = Settings(
        redis_url=redis_cluster.url,
        redis_prefix=f"test-limits-{uuid.uuid4().hex[:10]}:",
        send_rate=0.01,
        send_burst=3,
        max_connections_per_user=2,
    )
    workers = [RedisLimits(settings), RedisLimits(settings)]
    try:
        for n in range(PEOPLE):
            person = f"person-{n}"
            sent = 0
            for turn in range(settings.send_burst * 2):
                try:
                    await workers[turn % 2].take_send("staff", person)
                    sent += 1
                except ChatError:
                    pass
            assert sent == settings.send_burst, person
            claims = [await workers[turn % 2].claim("staff", person) for turn in range(4)]
            assert [c is not None for c in claims] == [True, True, False, False], person
    finally:
        for worker in workers:
            await worker.stop()
