"""Fixtures that start real server processes against real PostgreSQL and Redis.

`cluster` is two single-worker servers sharing one database and (under a
prefix of their own) the machine's Redis, started once per module: tests on
it each provision a room of their own, so they do not see each other. Tests
that kill something start their own servers with `start_servers`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.servers import (
    SHARED_REDIS_URL,
    HostApi,
    Peer,
    PgDatabase,
    RedisProcess,
    Room,
    ServerProcess,
    new_room,
    start_all,
)

OpenPeer = Callable[[str, str, Sequence[str]], Awaitable[Peer]]
StartServers = Callable[..., "Cluster"]


@dataclass
class Cluster:
    db: PgDatabase
    servers: list[ServerProcess]

    @property
    def a(self) -> ServerProcess:
        return self.servers[0]

    @property
    def b(self) -> ServerProcess:
        return self.servers[1]

    def logs(self) -> str:
        """Server output for a failing assertion's message."""
        return "\n".join(f"--- {s.log_path}\n{s.log_tail()}" for s in self.servers)


def _prefix() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}:"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="module")
def cluster(pg_template: str, redis_available: str, logs: Path) -> Iterator[Cluster]:
    db = PgDatabase().create(template=pg_template)
    prefix = _prefix()
    servers = [
        ServerProcess(logs, database_url=db.url, redis_url=redis_available, prefix=prefix)
        for _ in range(2)
    ]
    try:
        yield Cluster(db, start_all(servers))
    finally:
        for server in servers:
            server.stop()
        db.drop()


@pytest.fixture
def start_servers(pg_template: str, redis_available: str, logs: Path) -> Iterator[StartServers]:
    """Start `count` servers on a database of their own; stopped (or found
    killed) and dropped after the test."""
    started: list[Cluster] = []

    def start(
        count: int = 2,
        redis_url: str = SHARED_REDIS_URL,
        extra_env: Mapping[str, str] | None = None,
        workers: int = 1,
        first_env: Mapping[str, str] | None = None,
    ) -> Cluster:
        """`first_env` is added to the first server's environment only (a
        fault point on one worker)."""
        db = PgDatabase().create(template=pg_template)
        prefix = _prefix()
        servers = [
            ServerProcess(
                logs,
                database_url=db.url,
                redis_url=redis_url,
                prefix=prefix,
                extra_env={**(extra_env or {}), **((first_env or {}) if n == 0 else {})},
                workers=workers,
            )
            for n in range(count)
        ]
        cluster = Cluster(db, servers)
        started.append(cluster)
        start_all(servers)
        return cluster

    yield start
    for cluster in started:
        for server in cluster.servers:
            server.stop()
        cluster.db.drop()


@pytest.fixture
def private_redis(logs: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which it may kill and restart."""
    server = RedisProcess(logs).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def host_of() -> AsyncIterator[Callable[[ServerProcess], HostApi]]:
    clients: list[HostApi] = []

    def make(server: ServerProcess) -> HostApi:
        client = HostApi(server.url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def make_room(
    host_of: Callable[[ServerProcess], HostApi],
) -> Callable[[ServerProcess], Awaitable[Room]]:
    async def make(server: ServerProcess) -> Room:
        return await new_room(host_of(server))

    return make


@pytest.fixture
async def open_peer() -> AsyncIterator[OpenPeer]:
    """Connected browser tabs, closed after the test."""
    peers: list[Peer] = []

    async def open_(name: str, cookie: str, urls: Sequence[str]) -> Peer:
        peer = Peer(name, cookie, urls)
        peers.append(peer)
        return await peer.connect()

    yield open_
    for peer in peers:
        await peer.close()
