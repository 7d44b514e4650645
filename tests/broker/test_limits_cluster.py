"""Per-person limits on a Redis Cluster (issue 9 item 9): each person's
keys carry the person's hash tag, so the Lua scripts run on one shard, and
two workers share each limit whichever shard a person lands on. Sends
waiting at once share one pipeline (issue 10), which the cluster client
splits by node."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from chatserver.broker.clients import key_client
from chatserver.chat.limits import RedisLimits
from chatserver.errors import ChatError
from chatserver.settings import Settings
from tests.helpers import take_send
from tests.redis_cluster import RedisClusterProcesses

PEOPLE = 12  # enough names to land on every shard of three


def limited_on(cluster: RedisClusterProcesses) -> Settings:
    """Three sends per person and no refill during a test; two sockets each."""
    return Settings(
        redis_url=cluster.url,
        redis_prefix=f"test-limits-{uuid.uuid4().hex[:10]}:",
        send_rate=0.01,
        send_burst=3,
        max_connections_per_user=2,
    )


async def test_two_workers_share_each_persons_limits_on_a_cluster(
    redis_cluster: RedisClusterProcesses,
) -> None:
    settings = limited_on(redis_cluster)
    workers = [RedisLimits(settings), RedisLimits(settings)]
    try:
        for n in range(PEOPLE):
            person = f"person-{n}"
            sent = 0
            for turn in range(settings.send_burst * 2):
                try:
                    await take_send(workers[turn % 2], "staff", person)
                    sent += 1
                except ChatError:
                    pass
            assert sent == settings.send_burst, person
            claims = [await workers[turn % 2].claim("staff", person) for turn in range(4)]
            assert [c is not None for c in claims] == [True, True, False, False], person
    finally:
        for worker in workers:
            await worker.stop()


async def test_one_batch_of_sends_spans_the_shards_and_keeps_each_bucket(
    redis_cluster: RedisClusterProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    settings = limited_on(redis_cluster)
    worker = RedisLimits(settings)
    # Scripts forgotten on every primary: the batch meets NOSCRIPT, loads
    # the script and sends again.
    flusher = key_client(redis_cluster.url, timeout=5.0)
    try:
        await flusher.script_flush()
        people = [f"person-{n}" for n in range(PEOPLE)]
        # Each person twice the burst, interleaved, all in one event-loop turn.
        turns = [person for _ in range(settings.send_burst * 2) for person in people]
        answers = await asyncio.gather(
            *(take_send(worker, "staff", person) for person in turns), return_exceptions=True
        )
        for person in people:
            mine = [a for p, a in zip(turns, answers, strict=True) if p == person]
            assert mine[: settings.send_burst] == [None] * settings.send_burst, person
            refused = mine[settings.send_burst :]
            assert all(isinstance(a, ChatError) and a.retry_after_ms for a in refused), person
        # Counted in the cluster, not by the fallback (which would count the same).
        assert "Redis unreachable" not in caplog.text
    finally:
        await flusher.aclose()
        await worker.stop()
