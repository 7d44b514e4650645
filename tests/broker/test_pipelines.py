"""`broker/pipelines.py`: pipelines on connections of their own, on a real
(private) Redis: replies in order, error replies in their place, a Redis
restarted between two pipelines, and more callers at once than spare
connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError

from chatserver.broker.pipelines import SPARE_CONNECTIONS, Pipelines, packed
from chatserver.broker.writer import Command
from tests.e2e.servers import RedisProcess
from tests.waits import eventually_async

TIMEOUT = 5.0


@pytest.fixture
async def lines(private_redis: RedisProcess) -> AsyncIterator[Pipelines]:
    client = Redis.from_url(private_redis.url, socket_timeout=TIMEOUT)
    pipelines = Pipelines(client, TIMEOUT)
    try:
        yield pipelines
    finally:
        await pipelines.close()
        await client.aclose()


# What the send path packs: command names, channel and key names, payloads,
# and the limits script's numbers.
ARGUMENTS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=50),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)


@given(
    st.lists(
        st.tuples(st.sampled_from(["PUBLISH", "SPUBLISH", "EVALSHA", "INCR"])).flatmap(
            lambda name: st.lists(ARGUMENTS, max_size=6).map(lambda a: (*name, *a))
        ),
        min_size=1,
        max_size=8,
    )
)
def test_commands_are_packed_as_redis_py_packs_them(commands: list[Command]) -> None:
    library = Connection()
    assert packed(commands) == b"".join(library.pack_commands(commands))


async def test_replies_come_in_order_with_error_replies_in_their_place(lines: Pipelines) -> None:
    replies = await lines.execute(
        [
            ("INCR", "k"),
            ("INCR", "k"),
            ("HGET", "k", "field"),  # the wrong type: an error reply
            ("EVAL", "return redis.call('INCR', KEYS[1])", 1, "k"),
        ],
        raise_on_error=False,
    )
    assert replies[:2] == [1, 2]
    assert isinstance(replies[2], ResponseError)
    assert replies[3] == 3
    with pytest.raises(ResponseError):
        await lines.execute([("HGET", "k", "field"), ("INCR", "k")])
    # The connection whose reply was left unread is not used again.
    assert await lines.execute([("INCR", "k")]) == [5]


async def test_a_redis_restarted_between_two_pipelines_costs_nothing(
    lines: Pipelines, private_redis: RedisProcess
) -> None:
    assert await lines.execute([("INCR", "before")]) == [1]
    private_redis.kill()
    private_redis.start()
    # A new Redis (it keeps nothing): the spare connection was closed by
    # the old one; the pipeline goes again on a new connection.
    assert await lines.execute([("INCR", "after"), ("INCR", "after")]) == [1, 2]


async def test_more_callers_at_once_than_spare_connections_all_get_their_replies(
    lines: Pipelines,
) -> None:
    callers = SPARE_CONNECTIONS * 3

    async def count(n: int) -> list[object]:
        return await lines.execute([("INCR", f"caller:{n}")] * 5)

    answers = await asyncio.gather(*(count(n) for n in range(callers)))
    assert answers == [[1, 2, 3, 4, 5]] * callers


async def test_a_pipeline_in_flight_when_closed_lets_go_of_its_connection(
    lines: Pipelines, private_redis: RedisProcess
) -> None:
    async with Redis.from_url(private_redis.url) as probe:
        before = await _clients(probe)
        assert await lines.execute([("INCR", "n")]) == [1]
        # Its connection stays, for the next pipeline.
        assert await _clients(probe) == before + 1
        running = asyncio.ensure_future(lines.execute([("INCR", "n")] * 50))
        await asyncio.sleep(0)  # it has taken the spare connection
        await lines.close()
        assert await running == list(range(2, 52))
        await eventually_async(
            lambda: _clients_at_most(probe, before),
            within=TIMEOUT,
            what="the closed pipelines' connection was disconnected",
        )


async def _clients(probe: Redis) -> int:
    return len(await probe.client_list())


async def _clients_at_most(probe: Redis, count: int) -> bool:
    return await _clients(probe) <= count
