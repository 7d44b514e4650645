"""Brokers for the shared backend tests: the in-process one, real Redis and
a real Redis Cluster.

Redis tests use the shared server at 127.0.0.1:6379 under a unique channel
prefix per broker (never FLUSH); fault tests run a private redis-server they
may kill. Cluster tests share one private six-node cluster per session;
tests that kill or reshard make a cluster of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from chatserver.broker import Broker, MemoryBroker
from chatserver.broker.base import DEFAULT_QUEUE_SIZE
from chatserver.broker.cluster import ClusterBroker
from chatserver.broker.redis import RedisBroker
from chatserver.broker.timing import DEFAULT_HEALTH_CHECK_INTERVAL
from tests.helpers import TEST_REDIS_URL
from tests.redis_cluster import RedisClusterProcesses

SHARED_REDIS_URL = TEST_REDIS_URL
# Fault tests want recovery within a second, not the production pacing.
FAST_RECONNECT = {"reconnect_min": 0.05, "reconnect_max": 0.2}

BrokerFactory = Callable[..., Awaitable[Broker]]
RedisFactory = Callable[..., Awaitable[RedisBroker]]
ClusterFactory = Callable[..., Awaitable[ClusterBroker]]


def unique_prefix() -> str:
    return f"test-{uuid4().hex[:8]}:"


@pytest.fixture
async def make_redis_broker() -> AsyncIterator[RedisFactory]:
    """Connected RedisBrokers, disconnected at teardown; fails if Redis is down."""
    created: list[RedisBroker] = []

    async def make(
        *,
        url: str = SHARED_REDIS_URL,
        prefix: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        require_up: bool = True,
        health_check_interval: float = DEFAULT_HEALTH_CHECK_INTERVAL,
    ) -> RedisBroker:
        broker = RedisBroker(
            url,
            prefix=prefix or unique_prefix(),
            queue_size=queue_size,
            health_check_interval=health_check_interval,
            **FAST_RECONNECT,
        )
        created.append(broker)
        await broker.connect()
        if require_up and not await broker.ping():
            pytest.fail(
                f"Redis at {url} is not reachable; the broker tests need a real Redis "
                "(start one with `redis-server --port 6379`)."
            )
        return broker

    yield make
    for broker in created:
        await broker.disconnect()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """Three primaries and three replicas, for tests that do not break it."""
    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[RedisClusterProcesses]:
    """A cluster of the test's own, to kill nodes of or reshard."""
    cluster = RedisClusterProcesses(tmp_path).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def make_cluster_broker(request: pytest.FixtureRequest) -> AsyncIterator[ClusterFactory]:
    """Connected ClusterBrokers (on the session cluster unless given a URL)."""
    created: list[ClusterBroker] = []

    async def make(
        *, url: str | None = None, prefix: str | None = None, queue_size: int = DEFAULT_QUEUE_SIZE
    ) -> ClusterBroker:
        if url is None:
            url = request.getfixturevalue("redis_cluster").url
        broker = ClusterBroker(
            url, prefix=prefix or unique_prefix(), queue_size=queue_size, **FAST_RECONNECT
        )
        created.append(broker)
        await broker.connect()
        return broker

    yield make
    for broker in created:
        await broker.disconnect()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make_broker(
    request: pytest.FixtureRequest,
    make_redis_broker: RedisFactory,
    make_cluster_broker: ClusterFactory,
) -> AsyncIterator[BrokerFactory]:
    """The same factory for every backend, so one test covers all three."""
    created: list[MemoryBroker] = []

    async def make(*, queue_size: int = DEFAULT_QUEUE_SIZE) -> Broker:
        if request.param == "redis":
            return await make_redis_broker(queue_size=queue_size)
        if request.param == "cluster":
            return await make_cluster_broker(queue_size=queue_size)
        broker = MemoryBroker(queue_size=queue_size)
        created.append(broker)
        await broker.connect()
        return broker

    yield make
    for broker in created:
        await broker.disconnect()


@pytest.fixture
async def broker(make_broker: BrokerFactory) -> Broker:
    return await make_broker()
