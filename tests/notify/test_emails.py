"""SPEC section 7: who is emailed, when, and what the email says."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from chatserver.chat.presence import MemoryPresence
from chatserver.notify.worker import Notifier
from tests.conftest import Scene
from tests.helpers import Host, open_link, signed_in
from tests.notify.conftest import MovableClock, SmtpServer, html_of, subject, text_of

DELAY = 120.0  # the default CHAT_NOTIFY_DELAY_SECONDS
CANDIDATE_LINK = re.compile(r"http://testserver/auth/candidate\?token=[\w.\-]+")
UNSUBSCRIBE = re.compile(r"<http://testserver/email/unsubscribe\?token=[\w.\-]+>")


async def send(person: Any, conversation: str, body: str) -> dict[str, Any]:
    response = await person.send(conversation, body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_candidate_is_emailed_once_the_message_is_unread_after_the_delay(
    scene: Scene,
    host: Host,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    new_client: Any,
) -> None:
    # Applied late on 2 November UTC: already 3 November in Auckland.
    await host.application(
        "app-1", candidate="cara", status="interviewing", applied_at="2026-11-02T20:00:00Z"
    )
    settings = await scene.cara.client.put(
        "/api/me/settings", json={"timezone": "Pacific/Auckland"}, headers=scene.cara.csrf
    )
    assert settings.status_code == 200, settings.text
    await send(scene.alice, scene.conversation, "Hello Cara, **thanks** for applying!")

    clock.advance(DELAY - 5)
    assert (await notifier.run_once()).planned == 0
    assert smtp.bag.messages() == []

    clock.advance(10)
    result = await notifier.run_once()
    assert (result.planned, result.handled) == (1, 1)
    [email] = smtp.bag.messages()
    assert str(email["To"]) == "Cara <cara@mail.example>"
    assert subject(email) == (
        "Alice Recruiter at Acme sent you a message about Teacher of Mathematics"
    )
    assert email["Message-ID"]
    assert email["Date"]
    # One-click unsubscribe (RFC 8058) for this candidate, needing no sign-in.
    assert UNSUBSCRIBE.fullmatch(str(email["List-Unsubscribe"]))
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(email["From"]) == "Acme via chatserver <chat@localhost>"
    assert email.get_content_type() == "multipart/alternative"
    text, html = text_of(email), html_of(email)
    for part in (text, html):
        assert "Acme" in part
        assert "Alice Recruiter" in part
        assert "Teacher of Mathematics" in part
        assert "3 November 2026" in part  # the date applied, in the candidate's timezone
        assert "Hello Cara, thanks for applying!" in part  # formatting stripped
        assert "**" not in part
    link = CANDIDATE_LINK.search(text)
    assert link is not None
    assert link.group(0) in html

    # The link signs the candidate in to that conversation.
    browser: httpx.AsyncClient = new_client()
    response = await open_link(browser, link.group(0))
    assert response.status_code == 303, response.text
    me = await signed_in(browser)
    assert (me.me["kind"], me.id) == ("candidate", "cara")
    history = await me.history(scene.conversation)
    assert [m["body"] for m in history] == ["Hello Cara, **thanks** for applying!"]

    assert (await notifier.run_once()).planned == 0  # never twice


async def test_messages_within_the_window_make_one_email(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    for body in ("First point", "Second point", "Third point"):
        await send(scene.alice, scene.conversation, body)
    await send(scene.bob, scene.conversation, "And one from me")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.messages()
    assert subject(email) == "4 new messages from Acme about Teacher of Mathematics"
    text = text_of(email)
    for body in ("First point", "Second point", "Third point", "And one from me"):
        assert body in text
    assert "Alice Recruiter and Bob Manager" in text

    # A later message starts a new window and a new email, about it alone.
    clock.reset()
    await send(scene.alice, scene.conversation, "One more thing")
    await notifier.run_once()
    assert len(smtp.bag.messages()) == 1
    clock.advance(DELAY + 1)
    await notifier.run_once()
    first, second = smtp.bag.messages()
    assert "One more thing" in text_of(second)
    assert "First point" not in text_of(second)
    assert first["Message-ID"] != second["Message-ID"]


async def test_a_message_read_in_the_meantime_is_not_emailed(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    message = await send(scene.alice, scene.conversation, "Are you free on Monday?")
    read = await scene.cara.post(
        f"/api/conversations/{scene.conversation}/read", {"seq": message["seq"]}
    )
    assert read.status_code == 204, read.text
    clock.advance(DELAY + 1)
    assert (await notifier.run_once()).planned == 0
    assert smtp.bag.messages() == []


async def test_the_next_candidate_is_never_emailed_what_was_written_to_the_previous_one(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await send(scene.alice, scene.conversation, "Hi Cara, your offer letter is attached")
    clock.advance(1)
    await host.application("app-1", candidate="zed", status="interviewing")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    assert smtp.bag.messages() == []

    await send(scene.alice, scene.conversation, "Hello Zed")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("zed@mail.example")
    assert "Hello Zed" in text_of(email)
    assert "offer letter" not in text_of(email)
    assert "offer letter" not in html_of(email)


async def test_staff_emails_name_who_wrote_even_after_the_application_moved_on(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await send(scene.cara, scene.conversation, "My phone is 555-1234")
    clock.advance(1)
    await host.application("app-1", candidate="zed", status="interviewing")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("alice@acme.example")
    assert subject(email) == "Cara replied about Teacher of Mathematics"
    for part in (text_of(email), html_of(email)):
        assert "Zed" not in part
        assert "Cara" in part


async def test_nobody_is_emailed_while_online_in_the_conversation(
    scene: Scene,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    presence: MemoryPresence,
) -> None:
    presence.enter(scene.conversation, "candidate", "cara")
    await send(scene.alice, scene.conversation, "Still there?")
    clock.advance(DELAY + 1)
    assert (await notifier.run_once()).planned == 0
    assert smtp.bag.messages() == []
    # Leaving without reading: the unread message is worth an email after all.
    presence.leave(scene.conversation, "candidate", "cara")
    await notifier.run_once()
    [email] = smtp.bag.messages()
    assert "Still there?" in text_of(email)


async def test_staff_get_an_email_per_candidate_reply_by_their_setting(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    off = await scene.bob.client.put(
        "/api/me/settings", json={"email_notifications": "off"}, headers=scene.bob.csrf
    )
    assert off.status_code == 200, off.text
    await send(scene.alice, scene.conversation, "Can you do Monday?")
    await send(scene.cara, scene.conversation, "Yes, *Monday* works. See you then.")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    to_alice = smtp.bag.to("alice@acme.example")
    assert smtp.bag.to("bob@acme.example") == []  # "off"
    assert smtp.bag.to("mallory@globex.example") == []  # another organisation
    assert len(to_alice) == 1
    [email] = to_alice
    assert subject(email) == "Cara replied about Teacher of Mathematics"
    text = text_of(email)
    assert "Yes, Monday works. See you then." in text
    assert f"http://testserver/c/{scene.conversation}" in text
    assert "Can you do Monday?" not in text  # a colleague's message is not news
    assert len(smtp.bag.to("cara@mail.example")) == 1  # and Cara got Alice's


async def test_email_times_name_their_zone_and_follow_an_adopted_browser_zone(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    # Cara never chose a zone: her browser's is adopted, and her email's
    # times are on its clock, labelled with its abbreviation.
    adopted = await scene.cara.post("/api/me/browser-timezone", {"timezone": "America/New_York"})
    assert adopted.status_code == 200, adopted.text
    # Alice's zone has no abbreviation: her emails name it.
    settings = await scene.alice.client.put(
        "/api/me/settings", json={"timezone": "Asia/Dubai"}, headers=scene.alice.csrf
    )
    assert settings.status_code == 200, settings.text
    sent = await send(scene.alice, scene.conversation, "Hello Cara")
    sent_at = datetime.fromisoformat(sent["created_at"])
    clock.advance(DELAY + 5)
    await notifier.run_once()
    [to_cara] = smtp.bag.messages()
    new_york = sent_at.astimezone(ZoneInfo("America/New_York"))
    label = f"{new_york.day} {new_york:%b %H:%M} {new_york.tzname()}"
    assert new_york.tzname() in ("EST", "EDT")
    assert f"({label})" in text_of(to_cara)
    assert f"· {label}" in html_of(to_cara)

    reply = await send(scene.cara, scene.conversation, "Hello Alice")
    replied_at = datetime.fromisoformat(reply["created_at"]).astimezone(ZoneInfo("Asia/Dubai"))
    clock.advance(DELAY + 5)
    await notifier.run_once()
    [to_alice] = [m for m in smtp.bag.messages() if "alice" in str(m["To"]).lower()]
    assert f"({replied_at.day} {replied_at:%b %H:%M} Asia/Dubai)" in text_of(to_alice)
