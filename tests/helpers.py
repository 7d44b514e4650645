"""Scenario helpers shared by the test suite."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from chatserver.chat.limits import Limits
from chatserver.chat.service import Chat
from chatserver.store import contexts
from scripts.load.backends import SHARED_REDIS_URL
from scripts.load.host import HostApi

# The shared Redis every test that needs one uses, under a prefix of its own
# (never flushed): the harness's, which the load test uses too.
TEST_REDIS_URL = SHARED_REDIS_URL
API_KEY = "test-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# How often `eventually` looks again.
EVENTUALLY_EVERY_SECONDS = 0.05

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    *,
    within: float,
    what: str,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """The first result of `check()` that is not None or False, for what
    another process does in its own time (a server starting, a file being
    written) and tells no one about. Looks every 50 ms, waiting with
    `pause(seconds)`; past `within` seconds the test fails saying `what`
    did not happen. `check` may raise to stop at once (a server process
    that exited)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        pause(EVENTUALLY_EVERY_SECONDS)


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


class Host(HostApi):
    """The in-process tests' host ATS: the one host API client
    (scripts/load/host.py) on the app's ASGI client, with the tests' key."""

    def __init__(self, client: httpx.AsyncClient, *, api_key: str = API_KEY) -> None:
        super().__init__(client, api_key=api_key)


@dataclass
class Person:
    """A signed-in browser: its cookie jar and CSRF token."""

    client: httpx.AsyncClient
    me: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.me["id"])

    @property
    def csrf(self) -> dict[str, str]:
        return {"X-CSRF-Token": str(self.me["csrf_token"])}

    async def send(
        self, conversation: str, body: str = "Hello", *, client_id: str | None = None, **extra: Any
    ) -> httpx.Response:
        payload = {"client_id": client_id or str(uuid.uuid4()), "body": body, **extra}
        return await self.client.post(
            f"/api/conversations/{conversation}/messages", json=payload, headers=self.csrf
        )

    async def history(self, conversation: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/api/conversations/{conversation}/messages", params=params
        )
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.csrf)

    async def inbox(self, **params: Any) -> dict[str, Any]:
        response = await self.client.get("/api/conversations", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())


async def open_link(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.get(path_of(url), follow_redirects=False)


async def signed_in(client: httpx.AsyncClient) -> Person:
    me = await client.get("/api/me")
    assert me.status_code == 200, me.text
    return Person(client, dict(me.json()))


async def sign_in_staff(host: Host, client: httpx.AsyncClient, staff_id: str) -> Person:
    response = await open_link(client, await host.staff_link(staff_id))
    assert response.status_code == 303, response.text
    return await signed_in(client)


async def sign_in_candidate(host: Host, client: httpx.AsyncClient, application_id: str) -> Person:
    response = await open_link(client, await host.candidate_link(application_id))
    assert response.status_code == 303, response.text
    return await signed_in(client)


# -- helpers for the HTTP API tests ------------------------------------------------


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the spec's error object with this status and code; return it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body
    return dict(body["error"])


def new_client_id() -> str:
    return str(uuid.uuid4())


async def delete_message(person: Person, message_id: str, scope: str = "me") -> httpx.Response:
    return await person.client.delete(
        f"/api/messages/{message_id}", params={"for": scope}, headers=person.csrf
    )


async def upload(
    person: Person, name: str, data: bytes, content_type: str = "application/octet-stream"
) -> httpx.Response:
    return await person.client.post(
        "/api/attachments", files={"file": (name, data, content_type)}, headers=person.csrf
    )


async def audit_actions(host: Host, application_id: str) -> list[str]:
    response = await host.client.get(f"/api/v1/applications/{application_id}/audit", headers=AUTH)
    assert response.status_code == 200, response.text
    return [event["action"] for event in response.json()["events"]]


async def count_rows(app: Any, table: Any, **where: Any) -> int:
    """Rows of a table in the app's database, e.g. `count_rows(app, messages)`."""
    from sqlalchemy import func, select

    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with app.state.services.chat.db.transaction() as conn:
        return int((await conn.execute(query)).scalar_one())


@contextlib.asynccontextmanager
async def other_app(settings: Any) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """Another app process on the same database and broker, with other
    settings (rotated keys, a tight rate limit, …); yields a browser factory."""
    from chatserver.app import create_app

    application = create_app(settings, run_notifier=False)
    clients: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=application)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        return clients[-1]

    async with application.router.lifespan_context(application):
        try:
            yield make
        finally:
            for c in clients:
                await c.aclose()


async def take_send(limits: Limits, kind: str, person_id: str) -> None:
    """One person's send through `Limits.take_sends` (the send queue asks
    for a whole batch at once), raising its refusal."""
    refused = await limits.take_sends([(kind, person_id)])
    if refused:
        raise refused[0]


async def context_of(chat: Chat, conversation_id: str) -> contexts.ConversationContext:
    async with chat.db.transaction() as conn:
        ctx = await contexts.load(conn, conversation_id)
    assert ctx is not None, conversation_id
    return ctx


async def publish_about(chat: Chat, conversation_id: str, event: dict[str, Any]) -> None:
    """Publish `event` about a conversation as the domain does: once, on
    its organisation's stream."""
    await chat.events.publish([(await context_of(chat, conversation_id), event)])
