"""Per-person limits across workers (issue 9 item 9): two `RedisLimits` on
one Redis act as two workers and must share each limit; without Redis a
worker falls back to its own counts instead of refusing everyone."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from chatserver.chat import limits
from chatserver.chat.events import person_channel
from chatserver.chat.limits import LocalLimits, RedisLimits, limits_from_settings
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings
from tests.e2e.servers import RedisProcess
from tests.helpers import take_send
from tests.waits import eventually_async

WORKERS = 2
# A released connection place is claimable again within this.
RELEASE_WITHIN = 2.0


@pytest.fixture
def limited(redis_available: str) -> Settings:
    return Settings(
        redis_url=redis_available,
        redis_prefix=f"test-limits-{uuid.uuid4().hex[:10]}:",
        send_rate=0.5,
        send_burst=4,
        max_connections_per_user=3,
    )


@pytest.fixture
async def workers(limited: Settings) -> AsyncIterator[list[RedisLimits]]:
    started = [RedisLimits(limited) for _ in range(WORKERS)]
    for worker in started:
        await worker.start()
    try:
        yield started
    finally:
        for worker in started:
            await worker.stop()


async def sends_taken(
    take: Callable[[], Awaitable[None]], attempts: int
) -> tuple[int, list[ChatError]]:
    """How many of `attempts` sends went through, and the refusals of the others."""
    taken, refusals = 0, []
    for _ in range(attempts):
        try:
            await take()
            taken += 1
        except ChatError as exc:
            refusals.append(exc)
    return taken, refusals


def too_fast(refusals: list[ChatError]) -> bool:
    return all(
        r.code is ErrorCode.RATE_LIMITED and 0 < (r.retry_after_ms or 0) <= 2000 for r in refusals
    )


def test_the_embedded_default_counts_in_the_worker() -> None:
    assert isinstance(limits_from_settings(Settings()), LocalLimits)


async def test_a_person_spreading_sends_over_workers_gets_the_burst_once(
    workers: list[RedisLimits], limited: Settings
) -> None:
    first, second = workers
    turns = iter(range(limited.send_burst * 2))
    taken, refusals = await sends_taken(
        lambda: take_send(workers[next(turns) % WORKERS], "staff", "alice"),
        limited.send_burst * 2,
    )
    assert len(refusals) == limited.send_burst
    assert too_fast(refusals)
    assert taken == limited.send_burst
    # Another person has a bucket of their own.
    await take_send(second, "staff", "bob")
    await take_send(first, "candidate", "alice")


async def test_connections_are_capped_across_workers_and_released(
    workers: list[RedisLimits], limited: Settings
) -> None:
    first, second = workers
    cap = limited.max_connections_per_user
    tickets = [await workers[n % WORKERS].claim("staff", "alice") for n in range(cap)]
    assert None not in tickets
    assert await first.claim("staff", "alice") is None
    assert await second.claim("staff", "alice") is None
    assert await second.claim("staff", "bob") is not None
    ticket = tickets[0]
    assert ticket is not None
    first.release("staff", "alice", ticket)
    # The release is written in the background.
    again = await eventually_async(
        lambda: second.claim("staff", "alice"), within=RELEASE_WITHIN, what="a released place"
    )
    assert again is not None


async def test_a_crashed_workers_connections_expire_unless_refreshed(
    limited: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "TICKET_SECONDS", 0.3)
    crashed, alive = RedisLimits(limited), RedisLimits(limited)
    cap = limited.max_connections_per_user
    try:
        for _ in range(cap - 1):
            assert await crashed.claim("staff", "alice") is not None
        assert await alive.claim("staff", "alice") is not None
        assert await alive.claim("staff", "alice") is None
        # `crashed` never refreshes again; `alive` keeps its ticket fresh.
        # The sleeps are the scenario: time passing past crashed's tickets' TTL.
        for _ in range(3):
            await asyncio.sleep(0.2)
            await alive.refresh()
        held = [await alive.claim("staff", "alice") for _ in range(cap)]
        assert sum(ticket is not None for ticket in held) == cap - 1
    finally:
        await alive.stop()
        await crashed.stop()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_without_redis_each_worker_falls_back_to_its_own_counts(
    limited: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    down = RedisLimits(limited.with_(redis_url=f"redis://127.0.0.1:{closed_port()}/0"))
    try:
        taken, refusals = await sends_taken(
            lambda: take_send(down, "staff", "alice"), limited.send_burst + 2
        )
        assert taken == limited.send_burst
        assert len(refusals) == 2
        assert too_fast(refusals)
        cap = limited.max_connections_per_user
        held = [await down.claim("staff", "alice") for _ in range(cap + 1)]
        assert sum(ticket is not None for ticket in held) == cap
        assert "Redis unreachable" in caplog.text
    finally:
        await down.stop()


# Sends coalesced into pipelines (issue 10, cost per message).

PEOPLE = 200
# Round trips allowed for PEOPLE concurrent sends: one pipeline may reach
# Redis in a few reads; one round trip per send would be PEOPLE.
FEW_ROUND_TRIPS = 5
# A stalled Redis costs one timeout, plus this much for a slow machine.
STALL_SLACK_SECONDS = 2.0


@pytest.fixture
async def alone(limited: Settings, private_redis: RedisProcess) -> AsyncIterator[RedisLimits]:
    worker = RedisLimits(limited.with_(redis_url=private_redis.url))
    try:
        yield worker
    finally:
        await worker.stop()


async def server_stats(redis: Redis) -> tuple[int, dict[str, int]]:
    """The reads Redis has processed (requests arriving; a pipeline is one,
    or a few when it spans socket reads) and the calls of each command."""
    stats = await redis.info("stats")
    commands = await redis.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(c["calls"]) for name, c in commands.items()}
    return int(stats["total_reads_processed"]), calls


def tokens_key(settings: Settings, person: str) -> str:
    return f"{settings.redis_prefix}sends:{{{person_channel('staff', person)}}}"


async def test_concurrent_sends_share_a_few_round_trips_and_spend_one_token_each(
    alone: RedisLimits, limited: Settings, private_redis: RedisProcess
) -> None:
    # The first send connects and loads the script (a fresh Redis answers
    # NOSCRIPT), so the count below is the sends' own.
    await take_send(alone, "staff", "warm-up")
    async with Redis.from_url(private_redis.url) as probe:
        await probe.config_resetstat()
        reads_before, _ = await server_stats(probe)
        await asyncio.gather(*(take_send(alone, "staff", f"p{n}") for n in range(PEOPLE)))
        reads_after, calls = await server_stats(probe)
        # Minus the probe's own second INFO request.
        assert reads_after - reads_before - 1 <= FEW_ROUND_TRIPS
        assert calls["evalsha"] == PEOPLE
        assert not {name for name in calls if name.startswith("script")}
        async with probe.pipeline(transaction=False) as pipe:
            for n in range(PEOPLE):
                pipe.hget(tokens_key(limited, f"p{n}"), "tokens")
            tokens = await pipe.execute()
    assert {float(t) for t in tokens} == {limited.send_burst - 1.0}


async def test_a_batch_of_sends_is_one_round_trip_and_refuses_each_person_past_the_burst(
    alone: RedisLimits, limited: Settings, private_redis: RedisProcess
) -> None:
    await take_send(alone, "staff", "warm-up")
    people = 3
    # Each person one send more than the burst, interleaved as a batch is.
    senders = [("staff", f"q{n % people}") for n in range(people * (limited.send_burst + 1))]
    async with Redis.from_url(private_redis.url) as probe:
        await probe.config_resetstat()
        reads_before, _ = await server_stats(probe)
        refused = await alone.take_sends(senders)
        reads_after, calls = await server_stats(probe)
    assert reads_after - reads_before - 1 <= FEW_ROUND_TRIPS
    assert calls["evalsha"] == len(senders)
    # Each person's last send, and nobody else's.
    assert sorted(refused) == list(range(len(senders) - people, len(senders)))
    assert too_fast(list(refused.values()))


async def test_a_crowd_of_sockets_claims_its_places_in_redis_not_past_the_pool(
    alone: RedisLimits,
    limited: Settings,
    private_redis: RedisProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # More at once than redis-py's pool of 100 connections: one call each
    # would be refused ("Too many connections") and fall back.
    tickets = await asyncio.gather(*(alone.claim("staff", f"p{n}") for n in range(PEOPLE)))
    assert None not in tickets
    assert "Redis unreachable" not in caplog.text
    await alone.refresh()
    assert "Redis unreachable" not in caplog.text
    async with (
        Redis.from_url(private_redis.url) as probe,
        probe.pipeline(transaction=False) as pipe,
    ):
        for n in range(PEOPLE):
            pipe.zcard(f"{limited.redis_prefix}conns:{{{person_channel('staff', f'p{n}')}}}")
        held = await pipe.execute()
    assert held == [1] * PEOPLE


async def test_a_person_over_the_rate_is_refused_while_the_rest_of_the_batch_passes(
    alone: RedisLimits, limited: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: the 21 sends below go in three, alice in the middle one.
    monkeypatch.setattr(alone.sends, "max_batch", 7)
    taken, refusals = await sends_taken(
        lambda: take_send(alone, "staff", "alice"), limited.send_burst
    )
    assert (taken, refusals) == (limited.send_burst, [])
    people = [f"p{n}" for n in range(20)]
    people.insert(len(people) // 2, "alice")
    answers = await asyncio.gather(
        *(take_send(alone, "staff", person) for person in people), return_exceptions=True
    )
    refused = {person: a for person, a in zip(people, answers, strict=True) if a is not None}
    assert list(refused) == ["alice"]
    assert isinstance(refused["alice"], ChatError)
    assert too_fast([refused["alice"]])


async def test_a_caller_cancelled_mid_batch_leaves_the_others_their_answers(
    limited: Settings,
    private_redis: RedisProcess,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Room for the pause below on a slow machine: no one falls back.
    monkeypatch.setattr(limits, "REDIS_TIMEOUT_SECONDS", 10.0)
    worker = RedisLimits(limited.with_(redis_url=private_redis.url))
    try:
        await take_send(worker, "staff", "warm-up")
        private_redis.pause()
        sends = [asyncio.create_task(take_send(worker, "staff", f"p{n}")) for n in range(10)]
        # The batch has left for the stalled Redis when nobody is queued.
        await eventually_async(
            lambda: worker.sends.sending and not worker.sends.queued,
            within=5,
            what="the batch in flight",
        )
        sends[3].cancel()
        private_redis.resume()
        answers = await asyncio.gather(*sends, return_exceptions=True)
        assert isinstance(answers[3], asyncio.CancelledError)
        assert [a for n, a in enumerate(answers) if n != 3] == [None] * 9
        # Answered by Redis, not by the fallback.
        assert "Redis unreachable" not in caplog.text
    finally:
        private_redis.resume()
        await worker.stop()


async def test_a_stalled_redis_costs_one_timeout_then_sends_count_locally(
    alone: RedisLimits,
    limited: Settings,
    private_redis: RedisProcess,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "RETRY_REDIS_SECONDS", 0.5)
    await take_send(alone, "staff", "warm-up")
    private_redis.pause()
    started = time.monotonic()
    await asyncio.gather(*(take_send(alone, "staff", f"p{n}") for n in range(50)))
    assert time.monotonic() - started < limits.REDIS_TIMEOUT_SECONDS + STALL_SLACK_SECONDS
    assert caplog.text.count("Redis unreachable") == 1
    # Counted locally now: the burst, then a refusal.
    taken, refusals = await sends_taken(
        lambda: take_send(alone, "staff", "alice"), limited.send_burst + 1
    )
    assert (taken, len(refusals)) == (limited.send_burst, 1)
    assert too_fast(refusals)
    private_redis.resume()
    people = (f"later-{n}" for n in itertools.count())
    async with Redis.from_url(private_redis.url) as probe:

        async def through_redis() -> bool:
            person = next(people)
            await take_send(alone, "staff", person)
            return bool(await probe.exists(tokens_key(limited, person)))

        # Back in Redis once the retry period is over.
        await eventually_async(through_redis, within=5, what="sends counted in Redis again")
