"""Fixtures that start real services, and helpers that make a scenario two
lines long.

Every test that takes `app` (or `client`, `host`, …) runs twice: on the
embedded default (SQLite + in-process broker) and on the production path
(PostgreSQL + Redis). PostgreSQL databases are cloned per test from a
migrated template made once per run, by a thread that makes each clone
while the test before runs and drops it after; Redis is shared, so each
test gets its own key and channel prefix and nothing is ever flushed.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import sqlalchemy as sa

from chatserver.app import create_app
from chatserver.settings import Settings
from chatserver.store.migrate import upgrade
from scripts.load.backends import PG_ADMIN_URL
from tests.e2e.servers import RedisProcess
from tests.helpers import (
    API_KEY,
    TEST_REDIS_URL,
    Host,
    Person,
    sign_in_candidate,
    sign_in_staff,
)
from tests.ws_helpers import LiveServer, Subscriptions, live_server

SECRET = "test-secret-key-0123456789abcdef"
RUN_ID = uuid.uuid4().hex[:8]


def _pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}", pytrace=False)


def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def create_database(name: str, template: str | None = None) -> None:
    with _pg_admin() as admin:
        suffix = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{suffix}')


def drop_database(name: str) -> None:
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def migrating(backend: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings of an empty, unmigrated database of the backend's kind, for
    tests of one migration over rows written before it."""
    if backend == "embedded":
        yield Settings(data_dir=tmp_path, secret_keys=(SECRET,))
        return
    name = f"chat_test_{RUN_ID}_m{uuid.uuid4().hex[:8]}"
    create_database(name)
    try:
        yield Settings(database_url=pg_url(name), secret_keys=(SECRET,))
    finally:
        drop_database(name)


def insert_rows(url: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Rows as a database before a migration holds them: plain INSERTs in
    one transaction, through the synchronous `url`."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table, values in rows:
            columns = ", ".join(values)
            params = ", ".join(f":{k}" for k in values)
            conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), values)
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test clones."""
    name = f"chat_test_tmpl_{RUN_ID}"
    create_database(name)
    try:
        upgrade(Settings(database_url=pg_url(name), secret_keys=(SECRET,)))
        yield name
    finally:
        drop_database(name)


class Clones:
    """Clones of the template, each made while the test before runs.

    Cloning the migrated template takes PostgreSQL about 0.35 s (it copies
    every relation through the WAL), longer than many tests themselves: a
    thread makes the next clone, and drops the used ones, in the
    background. Each test still gets a database of its own, never used
    before."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-clones")
        self._next = self._clone()

    def _clone(self) -> Future[str]:
        return self._thread.submit(self._create)

    def _create(self) -> str:
        name = f"chat_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        create_database(name, template=self._template)
        return name

    def take(self) -> str:
        taken, self._next = self._next, self._clone()
        return taken.result()

    def drop(self, name: str) -> None:
        self._thread.submit(drop_database, name)

    def close(self) -> None:
        self._thread.submit(lambda: drop_database(self._next.result()))
        self._thread.shutdown(wait=True)


@pytest.fixture(scope="session")
def pg_clones(pg_template: str) -> Iterator[Clones]:
    clones = Clones(pg_template)
    try:
        yield clones
    finally:
        clones.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    upgrade(Settings(data_dir=folder))
    return folder / "chatserver.db"


@pytest.fixture(scope="session")
def redis_available() -> str:
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:  # pragma: no cover - environment
        pytest.fail(f"Redis is not reachable at {TEST_REDIS_URL}: {exc}", pytrace=False)
    return TEST_REDIS_URL


@pytest.fixture(params=["embedded", "production"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def postgres_db(pg_clones: Clones) -> Iterator[str]:
    """A fresh PostgreSQL database (cloned from the template); its URL."""
    name = pg_clones.take()
    try:
        yield pg_url(name)
    finally:
        pg_clones.drop(name)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    common = Settings(
        secret_keys=(SECRET,),
        api_keys=(API_KEY,),
        base_url="http://testserver",
        data_dir=tmp_path,
        attachments_dir=tmp_path / "attachments",
        outbox_dir=tmp_path / "outbox",
        send_rate=1000.0,
        send_burst=1000,
    )
    if backend == "embedded":
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "chatserver.db")
        return common
    return common.with_(
        database_url=request.getfixturevalue("postgres_db"),
        redis_url=request.getfixturevalue("redis_available"),
        redis_prefix=f"test-{uuid.uuid4().hex[:10]}:",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings, run_notifier=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def send_buffer() -> int | None:
    """The kernel send buffer of the live server's sockets (None: Linux's
    own); tests of slow clients override it with a small one."""
    return None


@pytest.fixture
async def server(
    app: object, settings: Settings, send_buffer: int | None
) -> AsyncIterator[LiveServer]:
    """The test's app served by a real uvicorn on a free loopback port."""
    async with live_server(app, settings, send_buffer=send_buffer) as running:
        yield running


@pytest.fixture
def subscriptions(app: Any) -> Subscriptions:
    """The broker's subscriptions from the start of the test (before any socket)."""
    return Subscriptions(app.state.services.broker)


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def host(client: httpx.AsyncClient) -> Host:
    return Host(client)


@pytest.fixture
async def new_client(app: object) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """A factory of independent browsers (cookie jars) on the same app."""
    clients: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def scene(host: Host, new_client: Callable[[], httpx.AsyncClient]) -> Scene:
    """The usual cast: org A with two staff, an interviewing application for
    candidate Cara; org B with its own staff and application."""
    return await Scene.build(host, new_client)


class Scene:
    """Named people, each signed in with their own cookie jar."""

    alice: Person
    bob: Person
    cara: Person
    mallory: Person
    conversation: str
    other_conversation: str

    @classmethod
    async def build(cls, host: Host, make: Callable[[], httpx.AsyncClient]) -> Scene:
        self = cls()
        await host.staff("alice", org="acme", name="Alice Recruiter")
        await host.staff("bob", org="acme", name="Bob Manager")
        await host.staff("mallory", org="globex", name="Mallory Other")
        app = await host.application("app-1", org="acme", candidate="cara", status="interviewing")
        other = await host.application(
            "app-9", org="globex", candidate="dan", status="interviewing"
        )
        self.conversation = app["conversation_id"]
        self.other_conversation = other["conversation_id"]
        self.alice = await sign_in_staff(host, make(), "alice")
        self.bob = await sign_in_staff(host, make(), "bob")
        self.mallory = await sign_in_staff(host, make(), "mallory")
        self.cara = await sign_in_candidate(host, make(), "app-1")
        return self


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own, on a free loopback port: its
    statistics count only the test's commands, and it can be stopped or
    killed without touching the shared one."""
    server = RedisProcess(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
