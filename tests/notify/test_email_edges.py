"""Email edges (issue 11 item 8): one-click unsubscribe without signing in
(RFC 8058), a sender that names the organisation, the digest at
CHAT_DIGEST_HOUR only, and long emails that show the latest few."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from chatserver.chat.presence import MemoryPresence
from chatserver.notify.compose import MESSAGES_SHOWN
from chatserver.notify.transport import SmtpTransport
from chatserver.notify.unsubscribe import Recipient, UnsubscribeLinks
from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.helpers import AUTH, Host, Person, signed_in
from tests.notify.conftest import MovableClock, SmtpServer, html_of, subject, text_of
from tests.notify.test_digest import NEW_YORK, choose, next_local

DELAY = 120.0
LINK = re.compile(r"http://testserver/email/unsubscribe\?token=[\w.\-%]+")


def unsubscribe_link(email: EmailMessage) -> str:
    """The link of the email's footer, checked to be the List-Unsubscribe one."""
    header = str(email["List-Unsubscribe"]).strip("<>")
    found = LINK.search(text_of(email))
    assert found is not None
    assert found.group(0) == header
    assert header in html_of(email).replace("&amp;", "&")
    parts = urlsplit(header)
    return f"{parts.path}?{parts.query}"


async def setting_of(person: Person) -> str:
    return str((await signed_in(person.client)).me["email_notifications"])


async def emailed_candidate(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> EmailMessage:
    await scene.alice.send(scene.conversation, "Could you do Monday?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("cara@mail.example")
    return email


async def test_one_click_unsubscribe_turns_emails_off_without_signing_in(
    scene: Scene,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    new_client: Any,
) -> None:
    email = await emailed_candidate(scene, notifier, smtp, clock)
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    path = unsubscribe_link(email)
    stranger: httpx.AsyncClient = new_client()  # no cookies: a mail client

    # Opening the link (a scanner or a preview does) changes nothing.
    page = await stranger.get(path)
    assert page.status_code == 200
    assert "Cara" in page.text
    assert "an email for each message you haven" in page.text
    assert await setting_of(scene.cara) == "each"

    # The mail client's one-click POST (RFC 8058) turns emails off.
    response = await stranger.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert "You won" in response.text
    assert await setting_of(scene.cara) == "off"
    assert await setting_of(scene.alice) == "each"  # nobody else's

    await scene.alice.send(scene.conversation, "Are you still there?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    assert len(smtp.bag.to("cara@mail.example")) == 1

    # The page's own form chooses another setting, still without signing in.
    response = await stranger.post(path, data={"email_notifications": "daily"})
    assert response.status_code == 200
    assert await setting_of(scene.cara) == "daily"
    refused = await stranger.post(path, data={"email_notifications": "hourly"})
    assert refused.status_code == 422
    assert await setting_of(scene.cara) == "daily"


async def test_staff_unsubscribe_and_a_pending_email_is_dropped(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, new_client: Any
) -> None:
    await scene.cara.send(scene.conversation, "Hello there")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [to_bob] = smtp.bag.to("bob@acme.example")
    assert str(to_bob["From"]) == "Acme via chatserver <chat@localhost>"
    path = unsubscribe_link(to_bob)
    await scene.cara.send(scene.conversation, "One more thing")
    clock.advance(DELAY + 1)
    assert await notifier.plan() == 2  # Alice and Bob, not yet sent
    stranger: httpx.AsyncClient = new_client()
    assert (await stranger.post(path, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    assert await setting_of(scene.bob) == "off"
    await notifier.send_due()
    assert len(smtp.bag.to("bob@acme.example")) == 1  # the planned one was dropped
    assert len(smtp.bag.to("alice@acme.example")) == 2


async def test_a_pending_email_to_staff_the_host_removed_is_dropped(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    # Bob left while emails about Cara's message waited (SMTP down, or the
    # seconds between planning and sending): her words never reach him.
    await scene.cara.send(scene.conversation, "My new number is 07700 900123")
    clock.advance(DELAY + 1)
    assert await notifier.plan() == 2  # Alice and Bob, not yet sent
    removed = await host.client.delete("/api/v1/staff/bob", headers=AUTH)
    assert removed.status_code == 204, removed.text
    await notifier.run_once()
    assert len(smtp.bag.to("alice@acme.example")) == 1
    assert smtp.bag.to("bob@acme.example") == []


async def test_a_forged_or_damaged_unsubscribe_link_changes_nothing(
    scene: Scene, settings: Settings, client: httpx.AsyncClient
) -> None:
    links = UnsubscribeLinks(settings)
    good = links.token(Recipient("candidate", "cara"))
    forged = UnsubscribeLinks(settings.with_(secret_keys=("another-secret-0123456789",)))
    bad_tokens = [
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        forged.token(Recipient("candidate", "cara")),
        links.token(Recipient("candidate", "nobody")),
        "",
        "not-a-token",
    ]
    for token in bad_tokens:
        for method in ("GET", "POST"):
            response = await client.request(
                method,
                "/email/unsubscribe",
                params={"token": token},
                data={"List-Unsubscribe": "One-Click"} if method == "POST" else None,
            )
            assert response.status_code == 404, (token, method)
            assert "can't be used" in response.text
    assert await setting_of(scene.cara) == "each"
    # Another kind of signed token (a candidate's sign-in link) is no unsubscribe token.
    sign_in = scene.cara.client.cookies.get("chat_session") or ""
    response = await client.post(
        "/email/unsubscribe", params={"token": sign_in}, data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 404


async def test_the_sender_names_the_organisation(
    scene: Scene,
    host: Host,
    app: Any,
    settings: Settings,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    await host.application("app-1", org="acme", candidate="cara", status="interviewing")
    async with app.state.services.chat.db.transaction() as conn:
        from sqlalchemy import update

        from chatserver.store.tables import organisations

        await conn.execute(
            update(organisations)
            .where(organisations.c.id == "acme")
            .values(name="Northfield\r\nAcademy")
        )
    branded = settings.with_(mail_from="Hiring Mail <jobs@ats.example>")
    notifier = Notifier(
        app.state.services.chat,
        branded,
        MemoryPresence(),
        transport=SmtpTransport(f"smtp://127.0.0.1:{smtp.port}"),
        clock=clock,
    )
    await scene.alice.send(scene.conversation, "Hello")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.messages()
    assert str(email["From"]) == "Northfield Academy via Hiring Mail <jobs@ats.example>"
    assert email["Message-ID"].endswith("@ats.example>")


async def test_the_digest_goes_out_at_the_digest_hour_only(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    evening = next_local(time(22, 25), NEW_YORK)
    clock.set(evening)
    await choose(scene.alice, email_notifications="daily", timezone="America/New_York")
    await scene.cara.send(scene.conversation, "Is the post still open?")
    for _ in range(3):  # 22:25, 22:26, 22:27
        await notifier.run_once()
        clock.advance(60)
    clock.advance(3600)  # 23:28
    await notifier.run_once()
    morning = datetime.combine(evening.date() + timedelta(days=1), time(6, 59, 30), NEW_YORK)
    clock.set(morning)
    await notifier.run_once()
    assert smtp.bag.to("alice@acme.example") == []

    clock.advance(31)  # 07:00:01
    await notifier.run_once()
    [digest] = smtp.bag.to("alice@acme.example")
    assert subject(digest) == "Daily summary: 1 conversation unread"
    assert "Is the post still open?" in text_of(digest)
    assert str(digest["From"]) == "Acme via chatserver <chat@localhost>"


@pytest.mark.parametrize("kind", ["candidate", "staff"])
async def test_an_email_about_many_messages_shows_the_latest_few(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, kind: str
) -> None:
    writer, reader = (scene.alice, "cara") if kind == "candidate" else (scene.cara, "alice")
    for i in range(1, 76):
        response = await writer.send(scene.conversation, f"Point number {i:02d}.")
        assert response.status_code == 201, response.text
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = [m for m in smtp.bag.messages() if reader in str(m["To"])]
    text, html = text_of(email), html_of(email)
    expected = (
        "75 new messages from Acme about Teacher of Mathematics"
        if kind == "candidate"
        else "Cara sent 75 messages about Teacher of Mathematics"
    )
    assert subject(email) == expected
    for part in (text, html):
        shown = re.findall(r"Point number (\d\d)\.", part)
        assert shown == [f"{i:02d}" for i in range(76 - MESSAGES_SHOWN, 76)]
        assert f"{75 - MESSAGES_SHOWN} earlier messages are waiting" in part
