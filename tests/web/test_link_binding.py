"""Issue 9 items 5 and 10: candidate links follow the person, not the
application; a used staff link cannot be replayed at the 5-minute mark.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from chatserver.app import create_app
from chatserver.chat.signing import Signer
from chatserver.settings import Settings
from chatserver.store.tables import used_login_tokens
from chatserver.web.auth import SESSION_COOKIE
from tests.chat.sends import chat_of
from tests.conftest import Scene
from tests.helpers import Host, count_rows, error_of, open_link, sign_in_candidate
from tests.ws_helpers import LiveServer, open_socket


async def test_a_new_candidate_on_the_application_revokes_the_old_links_and_sessions(
    scene: Scene, host: Host, new_client: Any, server: LiveServer
) -> None:
    """The reported attack: the host gives app-1 to another candidate, and
    Cara's old link signed in as the new one."""
    cara_link = await host.candidate_link("app-1")
    await scene.alice.send(scene.conversation, "For Cara only")
    async with open_socket(server, scene.cara) as ws:
        await ws.subscribe(scene.conversation)
        await host.application("app-1", candidate="dora", status="interviewing")
        assert await ws.closed_code() == 1012  # reconnect: access changed

    opened = await open_link(new_client(), cara_link)
    assert opened.status_code == 401
    assert SESSION_COOKIE not in opened.cookies
    error_of(
        await scene.cara.client.get(f"/api/conversations/{scene.conversation}"), 404, "not_found"
    )
    assert (await scene.cara.inbox())["conversations"] == []
    async with open_socket(server, scene.cara) as ws:
        await ws.send({"type": "subscribe", "conversation": scene.conversation, "after": 0})
        assert (await ws.expect("error"))["code"] == "not_found"

    dora = await sign_in_candidate(host, new_client(), "app-1")
    assert dora.me["id"] == "dora"
    # What was written to Cara is not Dora's: a hidden placeholder.
    [placeholder] = await dora.history(scene.conversation)
    assert (placeholder["hidden"], placeholder["body"]) == (True, "")

    # Given back to Cara: links signed before stay revoked; a new one works.
    await host.application("app-1", candidate="cara", status="interviewing")
    assert (await open_link(new_client(), cara_link)).status_code == 401
    cara_again = await sign_in_candidate(host, new_client(), "app-1")
    assert cara_again.me["id"] == "cara"


async def test_a_session_from_before_does_not_see_the_application_given_back(
    scene: Scene, host: Host, app: Any, new_client: Any
) -> None:
    """Cara's cookie left on a shared computer: the application goes to
    Dora and comes back to Cara. That cookie does not read it again (nor
    Dora's messages in between); a new link does (the test above)."""
    await host.application("app-1", candidate="dora", status="interviewing")
    dora = await sign_in_candidate(host, new_client(), "app-1")
    await dora.send(scene.conversation, "Dora was here")
    chat = chat_of(app)
    start = chat.clock
    # The next change of candidate comes a few seconds after the cookie.
    chat.clock = lambda: start() + timedelta(seconds=3)
    await host.application("app-1", candidate="cara", status="interviewing")
    error_of(
        await scene.cara.client.get(f"/api/conversations/{scene.conversation}"), 404, "not_found"
    )
    assert (await scene.cara.inbox())["conversations"] == []
    assert (await scene.cara.client.get("/api/notifications")).json()["notifications"] == []


async def test_a_link_names_its_candidate(
    scene: Scene, settings: Settings, new_client: Any
) -> None:
    """A token naming another candidate, or from before links named one, is refused."""
    signer = Signer(settings)
    for token in (
        signer.candidate_link_token("app-1", "dan"),
        signer.candidate_link_token("app-1", "mallory"),
        signer._candidate_links.dumps({"a": "app-1"}),  # the old, unbound form
    ):
        assert (await open_link(new_client(), f"/auth/candidate?token={token}")).status_code == 401


class Clock:
    """A clock the test moves: links, sessions and the database share it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clocked(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Clock, Any]]:
    # On a whole second, as itsdangerous counts.
    clock = Clock(datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC))
    application = create_app(settings, clock=clock, run_notifier=False)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, clock, application


async def test_a_used_staff_link_cannot_be_replayed_at_the_five_minute_mark(
    clocked: tuple[httpx.AsyncClient, Clock, Any],
) -> None:
    client, clock, application = clocked
    auth = {"Authorization": "Bearer test-api-key"}
    staff = {"org": {"id": "acme", "name": "Acme"}, "name": "Alice", "email": "a@acme.example"}
    assert (await client.put("/api/v1/staff/alice", json=staff, headers=auth)).status_code == 200

    async def link() -> str:
        response = await client.post("/api/v1/staff/alice/login-link", headers=auth)
        return str(response.json()["url"])

    async def opens(url: str) -> int:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as b:
            return (await open_link(b, url)).status_code

    used = await link()  # signed at 12:00:00
    assert await opens(used) == 303
    # 12:05:00.9: the token is 300 whole seconds old, so it still verifies;
    # another sign-in at that moment prunes what it may, and the replay must
    # still find the used token.
    clock.now += timedelta(seconds=300, milliseconds=900)
    assert await opens(await link()) == 303
    assert await opens(used) == 401
    # 12:05:01: the token no longer verifies, and only now may it be forgotten.
    clock.now += timedelta(milliseconds=100)
    assert await opens(await link()) == 303
    assert await opens(used) == 401
    assert await count_rows(application, used_login_tokens) == 2
