"""The embedded default: emails land in the outbox folder and on /dev/mailbox,
where a newcomer can open a candidate's email and follow its link."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from chatserver.chat.presence import MemoryPresence
from chatserver.errors import ChatError
from chatserver.notify.transport import OutboxTransport
from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from chatserver.web import mailbox
from chatserver.web.responses import chat_error_handler
from tests.conftest import Scene
from tests.helpers import open_link, signed_in
from tests.notify.conftest import MovableClock

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

DELAY = 120.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The mailbox is mounted only by `chatserver demo`."""
    return settings.with_(demo_mode=True)


def mailbox_client(app: Any) -> httpx.AsyncClient:
    """The mailbox routes on the app's services, as app.py mounts them."""
    page = Starlette(routes=mailbox.routes, exception_handlers={ChatError: chat_error_handler})
    page.state.services = app.state.services
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=page), base_url="http://testserver")


async def test_a_candidate_email_can_be_opened_in_the_mailbox_and_its_link_followed(
    scene: Scene, app: Any, settings: Settings, clock: MovableClock, new_client: Any
) -> None:
    notifier = Notifier(
        app.state.services.chat,
        settings,
        MemoryPresence(),
        transport=OutboxTransport(settings.outbox_dir),
        clock=clock,
    )
    await scene.alice.send(scene.conversation, "Welcome to the *interview* stage")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [eml] = list(settings.outbox_dir.glob("*.eml"))

    async with mailbox_client(app) as browser:
        listing = await browser.get("/dev/mailbox")
        assert listing.status_code == 200
        assert listing.text.count('data-testid="mailbox-item"') == 1
        assert (
            "Alice Recruiter at Acme sent you a message about Teacher of Mathematics"
            in listing.text
        )
        assert f"/dev/mailbox/{eml.name}" in listing.text

        page = await browser.get(f"/dev/mailbox/{eml.name}")
        assert page.status_code == 200
        assert "Cara &lt;cara@mail.example&gt;" in page.text
        assert "Welcome to the interview stage" in page.text
        [link] = re.findall(r'href="(http://testserver/auth/candidate\?token=[^"]+)"', page.text)

        html = await browser.get(f"/dev/mailbox/{eml.name}/html")
        assert html.status_code == 200
        assert "Welcome to the interview stage" in html.text
        assert "script-src" not in html.headers["content-security-policy"]
        raw = await browser.get(f"/dev/mailbox/{eml.name}/raw")
        assert raw.headers["content-type"] == "message/rfc822"
        assert raw.content == eml.read_bytes()

        for bad in ("..%2Fchatserver.db", "nope.eml", "20261122T000000-0123456789abcdef.eml"):
            assert (await browser.get(f"/dev/mailbox/{bad}")).status_code == 404

    candidate: httpx.AsyncClient = new_client()
    response = await open_link(candidate, link.replace("&amp;", "&"))
    assert response.status_code == 303, response.text
    me = await signed_in(candidate)
    assert (me.me["kind"], me.id) == ("candidate", "cara")

    # Writing the same email again replaces its file: the outbox never shows it twice.
    assert (await notifier.run_once()).planned == 0
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1


async def test_the_mailbox_exists_only_in_the_embedded_default(
    app: Any, settings: Settings
) -> None:
    production = settings.with_(database_url="postgresql://db.example/chat")
    page = Starlette(routes=mailbox.routes, exception_handlers={ChatError: chat_error_handler})
    page.state.services = type(app.state.services)(
        **{**vars(app.state.services), "settings": production}
    )
    transport = httpx.ASGITransport(app=page)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        assert (await browser.get("/dev/mailbox")).status_code == 404
