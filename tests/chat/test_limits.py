"""Per-person limits across workers (issue 9 item 9): two `RedisLimits` on
one Redis act as two workers and must share each limit; without Redis a
worker falls back to its own counts instead of refusing everyone."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from chatserver.chat import limits
from chatserver.chat.limits import LocalLimits, RedisLimits, limits_from_settings
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings
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
        lambda: workers[next(turns) % WORKERS].take_send("staff", "alice"),
        limited.send_burst * 2,
    )
    assert len(refusals) == limited.send_burst
    assert too_fast(refusals)
    assert taken == limited.send_burst
    # Another person has a bucket of their own.
    await second.take_send("staff", "bob")
    await first.take_send("candidate", "alice")


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
            lambda: down.take_send("staff", "alice"), limited.send_burst + 2
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
