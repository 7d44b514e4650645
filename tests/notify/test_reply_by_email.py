"""Reply by email (issue 14): a notification email's Reply-To takes a reply
through `chatserver mail-in` (a real SMTP server on loopback) or the
webhook, and it lands in the conversation, live, once, under the policy.

Both backends: on the production path mail-in is a separate process on
PostgreSQL and Redis, and the staff member's socket is on the test's app.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest

from chatserver.chat import reply_mail
from chatserver.chat.email_replies import REPLIES_PER_WINDOW
from chatserver.chat.reply_tokens import ReplyTokens
from chatserver.clock import utcnow
from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from chatserver.store.tables import messages, outgoing_emails
from tests.conftest import Scene
from tests.helpers import AUTH, audit_actions, count_rows, error_of
from tests.notify.conftest import MovableClock, SmtpServer, subject, text_of
from tests.notify.mailin import (
    MailInServer,
    deliver,
    gmail_body,
    reply,
    reply_address,
    running_mail_in,
    self_signed,
)
from tests.notify.test_digest import choose
from tests.ws_helpers import live_server, open_socket

DELAY = 120.0
DOMAIN = "reply.test"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81"
    b"\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # 1 MiB keeps the oversize test small; the default is 25 MB.
    return settings.with_(reply_domain=DOMAIN, mail_max_bytes=1024 * 1024)


@pytest.fixture
async def mail_in(
    app: Any, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MailInServer]:
    async with running_mail_in(app, settings, tmp_path_factory.mktemp("mail-in")) as server:
        yield server


async def candidate_email(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> EmailMessage:
    """Alice writes to Cara; the notification email Cara gets."""
    response = await scene.alice.send(scene.conversation, "Could you come in on Tuesday?")
    assert response.status_code == 201, response.text
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("cara@mail.example")
    return email


async def staff_email(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> EmailMessage:
    """Cara writes; the notification email Alice gets."""
    response = await scene.cara.send(scene.conversation, "Is there parking at the school?")
    assert response.status_code == 201, response.text
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("alice@acme.example")
    return email


async def bodies(scene: Scene) -> list[tuple[str, str, str]]:
    """(sender id, body, via) of every message, as Alice reads them."""
    return [
        (m["sender"]["id"], m["body"], m["via"])
        for m in await scene.alice.history(scene.conversation)
    ]


async def send_raw(port: int, raw: bytes, sender: str, to: str) -> None:
    """Mail bytes as they are (raw UTF-8 headers, odd MIME) to mail-in."""
    await aiosmtplib.send(
        raw,
        hostname="127.0.0.1",
        port=port,
        sender=sender,
        recipients=[to],
        mail_options=["SMTPUTF8"],
        timeout=30,
    )


async def refusals(app: Any) -> int:
    return await count_rows(app, outgoing_emails, topic="reply_refused")


# -- the reply address ---------------------------------------------------------------


async def test_notification_emails_carry_a_short_signed_reply_address(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    address = reply_address(email)
    local, _, domain = address.partition("@")
    assert domain == DOMAIN
    assert local.startswith("reply+")
    assert len(local) <= 64
    assert local == local.lower()
    assert "reply to this email" in text_of(email).lower()
    # One address per person and conversation, reused by later emails.
    await scene.alice.send(scene.conversation, "And bring your certificates.")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    first, second = smtp.bag.to("cara@mail.example")
    assert reply_address(first).split("+")[1][:13] == reply_address(second).split("+")[1][:13]


async def test_without_a_reply_domain_emails_have_no_reply_to(
    scene: Scene, app: Any, settings: Settings, smtp: SmtpServer, clock: MovableClock
) -> None:
    from chatserver.notify.transport import SmtpTransport

    plain = Notifier(
        app.state.services.chat,
        settings.with_(reply_domain=""),
        transport=SmtpTransport(smtp.url),
        clock=clock,
    )
    await scene.alice.send(scene.conversation, "Hello")
    clock.advance(DELAY + 1)
    await plain.run_once()
    [email] = smtp.bag.to("cara@mail.example")
    assert email["Reply-To"] is None
    assert "reply to this email" not in text_of(email).lower()


# -- mail-in: the whole way, live ------------------------------------------------------


async def test_a_reply_through_mail_in_reaches_the_staff_socket_live_and_once(
    scene: Scene,
    app: Any,
    settings: Settings,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
    host: Any,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    mail = reply(
        email, gmail_body("Yes, Tuesday at 10 works for me.\n\nI'll bring my *certificates*.")
    )
    async with live_server(app, settings) as server, open_socket(server, scene.alice) as alice:
        subscribed = await alice.subscribe(scene.conversation, after=1)
        _, answer = await deliver(mail_in.port, mail)
        assert answer.startswith("2.0.0") or "OK" in answer, answer
        frame = await alice.next_of("message", within=15)
        message = frame["message"]
        assert message["seq"] == subscribed["last_seq"] + 1
        assert message["sender"] == {"kind": "candidate", "id": "cara", "name": "Cara"}
        assert (
            message["body"] == "Yes, Tuesday at 10 works for me.\n\nI'll bring my *certificates*."
        )
        assert "<em>certificates</em>" in message["html"]
        assert message["via"] == "email"
        # The same email delivered again (a retrying server) is taken and
        # makes no second message.
        await deliver(mail_in.port, mail)
        assert [f for f in await alice.quiet(0.5) if f["type"] == "message"] == []
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 2
    events = (await host.client.get("/api/v1/applications/app-1/audit", headers=AUTH)).json()
    sent = [e for e in events["events"] if e["action"] == "message.sent"]
    assert sent[-1]["actor"]["id"] == "cara"
    assert sent[-1]["detail"]["via"] == "email"
    assert "via" not in sent[0]["detail"]


async def test_staff_reply_by_email_as_themselves(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, mail_in: MailInServer
) -> None:
    email = await staff_email(scene, notifier, smtp, clock)
    await deliver(mail_in.port, reply(email, gmail_body("Yes, there are ten spaces.")))
    *_, (sender, body, via) = await bodies(scene)
    assert (sender, body, via) == ("alice", "Yes, there are ten spaces.", "email")


async def test_answering_an_email_reads_what_it_told_them_and_no_more(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, mail_in: MailInServer
) -> None:
    email = await staff_email(scene, notifier, smtp, clock)
    # Written after the email went out: Alice has not seen it.
    later = await scene.cara.send(scene.conversation, "And is lunch provided?")
    assert later.status_code == 201, later.text
    await deliver(mail_in.port, reply(email, gmail_body("Yes, there are ten spaces.")))
    # Not the emailed question, still the later one, in her inbox (and so
    # her bell and tomorrow's digest); Bob, who did not answer, has both.
    [alices] = (await scene.alice.inbox())["conversations"]
    assert alices["unread"] == 1
    [bobs] = (await scene.bob.inbox())["conversations"]
    assert bobs["unread"] == 2


def at_digest_hour(clock: MovableClock) -> str:
    """A fixed-offset zone whose clock shows the digest hour (7) now, so
    that the digest's reply address is not signed in mail-in's future
    (beyond CLOCK_SKEW). Near the end of an hour, the next one: the
    notifier's clock moves to its first second."""
    now = utcnow()
    if now.minute >= 57:
        now = (now + timedelta(hours=1)).replace(minute=0, second=1, microsecond=0)
        clock.set(now)
    offset = (7 - now.hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


async def test_answering_a_one_conversation_digest_reads_what_it_listed(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, mail_in: MailInServer
) -> None:
    """A digest records what it told, as a messages email does: a reply to
    it reads the messages it listed (and no later ones)."""
    await choose(scene.alice, email_notifications="daily", timezone=at_digest_hour(clock))
    for text in ("Is there parking?", "And lunch?", "And a dress code?"):
        sent = await scene.cara.send(scene.conversation, text)
        assert sent.status_code == 201, sent.text
    await notifier.run_once()
    [digest] = smtp.bag.to("alice@acme.example")
    assert subject(digest) == "Daily summary: 1 conversation unread"
    later = await scene.cara.send(scene.conversation, "Written after the digest.")
    assert later.status_code == 201, later.text
    await deliver(mail_in.port, reply(digest, gmail_body("Yes to all three.")))
    [alices] = (await scene.alice.inbox())["conversations"]
    assert alices["unread"] == 1
    bell = (await scene.alice.client.get("/api/notifications")).json()
    assert [entry["count"] for entry in bell["notifications"]] == [1]


# -- refused at RCPT TO ---------------------------------------------------------------


async def test_forged_expired_rotated_and_foreign_addresses_are_refused_at_rcpt(
    scene: Scene,
    app: Any,
    settings: Settings,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    good = reply_address(email)
    local, _, domain = good.partition("@")
    token = local.split("+", 1)[1]
    flipped = token[:-3] + ("a" if token[-3] != "a" else "b") + token[-2:]
    now = app.state.services.chat.clock()
    address_id = token  # not needed below: the expired and rotated ones are signed afresh
    del address_id
    from sqlalchemy import select

    from chatserver.store.tables import reply_addresses

    async with app.state.services.chat.db.transaction() as conn:
        row_id = (await conn.execute(select(reply_addresses.c.id))).scalar_one()
    expired = ReplyTokens(settings, lambda: now - timedelta(days=31)).address(row_id)
    rotated_out = ReplyTokens(settings.with_(secret_keys=("an-old-key-0123456789abcdef",))).address(
        row_id
    )
    for address in (
        f"reply+{flipped}@{domain}",
        expired,
        rotated_out,
        f"reply+{token}@other.example",
        f"postmaster@{DOMAIN}",
        f"cara@{DOMAIN}",
        f"reply+{token[:20]}@{domain}",
    ):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await deliver(mail_in.port, reply(email, "Hello", to=address), to=[address])
        [error] = refused.value.recipients
        assert error.code == 550, (address, error)
    # The address itself still works once rotation keeps its key.
    rotated = settings.with_(secret_keys=("a-new-key-0123456789abcdef", *settings.secret_keys))
    kept = ReplyTokens(rotated).read(good)
    assert kept.address_id == row_id
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 1


async def test_a_removed_staff_member_and_a_replaced_candidate_can_no_longer_reply(
    scene: Scene,
    app: Any,
    host: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    to_cara = await candidate_email(scene, notifier, smtp, clock)
    to_alice = await staff_email(scene, notifier, smtp, clock)
    removed = await host.client.delete("/api/v1/staff/alice", headers=AUTH)
    assert removed.status_code == 204
    await host.application("app-1", org="acme", candidate="carl", status="interviewing")
    for email in (to_alice, to_cara):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            await deliver(mail_in.port, reply(email, "Still me"))
        assert refused.value.recipients[0].code == 550
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 2


# -- refused or dropped at DATA -------------------------------------------------------


async def test_a_reply_from_another_address_is_refused_and_logged_without_content(
    scene: Scene,
    app: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    secret = "my bank details are 12-34-56"
    caplog.set_level(logging.INFO)
    for sender in ("mallory@evil.example", "Cara <cara@mail.example.evil>", ""):
        mail = reply(email, secret, sender=sender or "undisclosed-recipients:;")
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            # The envelope may say anything: the From header is checked.
            await deliver(mail_in.port, mail, sender="cara@mail.example")
        assert refused.value.code == 550
    # Case does not matter.
    taken = reply(email, "Upper case is me too", sender="CARA@MAIL.EXAMPLE")
    await deliver(mail_in.port, taken)
    assert (await bodies(scene))[-1] == ("cara", "Upper case is me too", "email")
    assert secret not in caplog.text
    assert "From is not their address" in caplog.text or not app.state.services.settings.embedded


async def test_a_raw_utf8_from_with_an_internationalised_domain_is_the_person(
    scene: Scene,
    host: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    """mail-in offers SMTPUTF8, so a From can arrive as raw UTF-8; its
    domain is compared in the stored IDNA form. Another domain is refused."""
    body = {
        "org": {"id": "acme", "name": "Acme"},
        "name": "Alice",
        "email": "alice@münchen-straße.example",
        "timezone": "UTC",
    }
    moved = await host.client.put("/api/v1/staff/alice", json=body, headers=AUTH)
    assert moved.status_code == 200, moved.text
    await scene.cara.send(scene.conversation, "Is there parking at the school?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("alice@xn--mnchen-strae-v9a90b.example")
    address = reply_address(email)

    async def send_from(sender: str, text: str) -> None:
        raw = reply(email, text, sender="placeholder@example.com").as_bytes()
        raw = raw.replace(b"placeholder@example.com", sender.encode())
        await send_raw(mail_in.port, raw, "alice@xn--mnchen-strae-v9a90b.example", address)

    await send_from("Alice Ö <alice@münchen-straße.example>", "Ten spaces, by UTF-8 mail.")
    assert (await bodies(scene))[-1] == ("alice", "Ten spaces, by UTF-8 mail.", "email")
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send_from("Alice Ö <alice@münchen-strasse.example>", "Not her domain.")
    assert refused.value.code == 550
    assert (await bodies(scene))[-1][1] == "Ten spaces, by UTF-8 mail."


async def test_mail_in_offers_starttls_with_a_certificate_and_takes_replies_over_it(
    scene: Scene,
    app: Any,
    settings: Settings,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    tmp_path: Path,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    cert, key = self_signed(tmp_path)
    async with running_mail_in(app, settings, tmp_path, tls=(cert, key)) as mail_in:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=mail_in.port, start_tls=False, cert_bundle=str(cert)
        )
        async with client:
            await client.ehlo()
            assert client.supports_extension("starttls")
            await client.starttls()
            assert client.get_transport_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
            await client.send_message(reply(email, gmail_body("Tuesday works; sent over TLS.")))
        # Opportunistic, as between mail servers: a sender that does not
        # ask still delivers.
        await deliver(mail_in.port, reply(email, gmail_body("And in plain.")), start_tls=False)
    assert [body for _, body, _ in await bodies(scene)][-2:] == [
        "Tuesday works; sent over TLS.",
        "And in plain.",
    ]
    # Without a certificate, STARTTLS is not offered at all.
    async with running_mail_in(app, settings, tmp_path) as plain:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=plain.port, start_tls=False)
        async with client:
            await client.ehlo()
            assert not client.supports_extension("starttls")


async def test_an_oversize_reply_is_refused_at_data(
    scene: Scene,
    app: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    big = reply(email, "x" * 100 + "\n" + ("lorem ipsum " * 10 + "\n") * 10_000)
    assert len(big.as_bytes()) > 1024 * 1024
    too_big = "5.3.4 A reply by email is at most 1048576 bytes"
    # Declared larger at MAIL FROM (aiosmtplib sends SIZE): refused before any data.
    with pytest.raises(aiosmtplib.SMTPResponseException) as declared:
        await deliver(mail_in.port, big)
    assert (declared.value.code, declared.value.message) == (552, too_big)
    # Not declared: refused at the end of DATA, with the same answer.
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=mail_in.port, start_tls=False)
    async with client:
        await client.ehlo()
        await client.mail("cara@mail.example")
        await client.rcpt(reply_address(email))
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await client.data(big.as_bytes())
    assert (refused.value.code, refused.value.message) == (552, too_big)
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 1


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ({"Auto-Submitted": "auto-replied"}, None),
        ({"Precedence": "bulk"}, None),
        ({"Precedence": "auto_reply"}, None),
        ({"X-Autoreply": "yes"}, None),
        ({"Subject-Override": "Automatic reply: Re: your message"}, None),
        ({}, ""),
    ],
    ids=["auto-submitted", "bulk", "auto_reply", "x-autoreply", "out-of-office", "null-sender"],
)
async def test_automatic_mail_is_dropped_without_an_answer(
    scene: Scene,
    app: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
    headers: dict[str, str],
    sender: str | None,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    headers = dict(headers)  # the parameter is shared by both backends' runs
    subject_override = headers.pop("Subject-Override", None)
    mail = reply(email, "I am out of the office until Monday.", headers=headers)
    if subject_override:
        del mail["Subject"]
        mail["Subject"] = subject_override
    _, answer = await deliver(mail_in.port, mail, sender=sender)
    assert "OK" in answer
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 1
    assert await refusals(app) == 0
    clock.advance(DELAY + 1)
    await notifier.run_once()
    assert len(smtp.bag.to("cara@mail.example")) == 1


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: Re: x",
        "Out of Office: x",
        "Automatische Antwort: x",
        "Abwesenheitsnotiz: x",
        "Réponse automatique : x",
        "Risposta automatica: x",
        "Resposta automática: x",
        "Afwezig: x",
        "Fuera de la oficina: x",
        "Автоматический ответ: x",
        "自动回复\uff1ax",
    ],
)
def test_out_of_office_subjects_in_many_languages_are_automatic(subject: str) -> None:
    mail = EmailMessage()
    mail["From"] = "cara@mail.example"
    mail["Subject"] = subject
    mail.set_content("Ich bin bis 3. Januar nicht im Büro.")
    assert reply_mail.automatic(reply_mail.parse(mail.as_bytes())) == "an out-of-office subject"
    del mail["Subject"]
    mail["Subject"] = "Re: " + subject  # a person answering one
    assert reply_mail.automatic(reply_mail.parse(mail.as_bytes())) is None


async def test_replies_by_email_are_bounded_per_hour_so_no_loop_goes_on(
    scene: Scene,
    app: Any,
    client: httpx.AsyncClient,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    """Two responders in a language no list knows: after REPLIES_PER_WINDOW
    replies by email in an hour the next is explained, not posted, so the
    other side is not emailed and nothing answers it."""
    email = await candidate_email(scene, notifier, smtp, clock)
    for n in range(REPLIES_PER_WINDOW):
        taken = await post_mail(client, reply(email, f"Kwa sasa siko ofisini ({n})."))
        assert taken.status_code == 202, taken.text
    error_of(await post_mail(client, reply(email, "Kwa sasa siko ofisini.")), 403, "not_allowed")
    # The staff message the candidate was emailed about, and their replies.
    posted = 1 + REPLIES_PER_WINDOW
    assert await count_rows(app, messages, conversation_id=scene.conversation) == posted
    assert await refusals(app) == 1
    await notifier.run_once()
    explanation = smtp.bag.to("cara@mail.example")[-1]
    assert f"replied by email {REPLIES_PER_WINDOW} times" in text_of(explanation)
    assert explanation["Reply-To"] is None
    # Staff, still answering in the app, are not held back.
    assert (await scene.alice.send(scene.conversation, "Noted.")).status_code == 201


# -- attachments -----------------------------------------------------------------------


async def test_an_attachment_arrives_as_an_attachment(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, mail_in: MailInServer
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    mail = reply(
        email, gmail_body("My certificate is attached."), files=[("cert.png", PNG, "image/png")]
    )
    await deliver(mail_in.port, mail)
    last = (await scene.alice.history(scene.conversation))[-1]
    assert last["body"] == "My certificate is attached."
    [attachment] = last["attachments"]
    assert attachment["name"] == "cert.png"
    assert attachment["content_type"] == "image/png"
    download = await scene.alice.client.get(attachment["url"])
    assert download.status_code == 200
    assert download.content == PNG


async def test_a_refused_attachment_is_explained_not_dropped(
    scene: Scene,
    app: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    script = b"<html><script>alert(1)</script></html>"
    mail = reply(email, "See attached", files=[("cv.pdf", script, "application/pdf")])
    _, answer = await deliver(mail_in.port, mail)
    assert "reason was sent to you by email" in answer
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 1
    await notifier.run_once()
    explanation = smtp.bag.to("cara@mail.example")[-1]
    assert "was not posted" in str(explanation["Subject"])
    assert "cv.pdf" in text_of(explanation)


async def test_a_reply_of_only_the_quoted_email_is_explained_as_such(
    scene: Scene,
    app: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    """An answer typed inside the quote, or none: nothing is posted and
    the explanation says to write above the quoted email."""
    email = await candidate_email(scene, notifier, smtp, clock)
    _, answer = await deliver(mail_in.port, reply(email, gmail_body("")))
    assert "reason was sent to you by email" in answer
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 1
    await notifier.run_once()
    explanation = text_of(smtp.bag.to("cara@mail.example")[-1])
    assert "no text of its own" in explanation
    assert "above the quoted email" in explanation


# -- the policy ------------------------------------------------------------------------


async def test_a_candidate_who_may_not_send_gets_one_polite_explanation(
    scene: Scene,
    app: Any,
    host: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    await host.application("app-1", org="acme", candidate="cara", status="not_progressing")
    mail = reply(email, gmail_body("Can I still come on Tuesday?"))
    for _ in range(2):  # a redelivery explains nothing twice
        _, answer = await deliver(mail_in.port, mail)
        assert "reason was sent to you by email" in answer
    # Alice's message and the status change's system line; no reply of Cara's.
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 2
    refused = await count_rows(
        app, messages, conversation_id=scene.conversation, sender_kind="candidate"
    )
    assert refused == 0
    assert await refusals(app) == 1
    await notifier.run_once()
    emails = smtp.bag.to("cara@mail.example")
    assert len(emails) == 2
    explanation = emails[-1]
    assert explanation["Auto-Submitted"] == "auto-replied"
    assert explanation["Reply-To"] is None
    text = text_of(explanation)
    assert "no longer progressing" in text
    assert "Can I still come" not in text
    # A reply to the explanation goes nowhere (it has no reply address), so
    # nothing can loop; and it went out once.
    await notifier.run_once()
    assert len(smtp.bag.to("cara@mail.example")) == 2


# -- quoted history --------------------------------------------------------------------

GMAIL = gmail_body("Yes, Tuesday at 10 works.")
OUTLOOK = """Yes, Tuesday at 10 works.

________________________________
From: Acme via chatserver <chat@localhost>
Sent: Monday, November 2, 2026 9:30 AM
To: Cara <cara@mail.example>
Subject: Alice Recruiter at Acme sent you a message

Could you come in on Tuesday?
"""
# Outlook on the web writes the separator right under the text.
OUTLOOK_NO_BLANK = OUTLOOK.replace("works.\n\n___", "works.\n___")
APPLE = """Yes, Tuesday at 10 works.

Sent from my iPhone

> On 2 Nov 2026, at 09:30, Acme via chatserver <chat@localhost> wrote:
>
> Could you come in on Tuesday?
"""
PLAIN_QUOTE = """> Could you come in on Tuesday?

Yes, Tuesday at 10 works.
"""
SIGNATURE = """Yes, Tuesday at 10 works.

--
Cara Candidate
07700 900000
"""
GMAIL_HTML = (
    '<div dir="ltr">Yes, Tuesday at 10 works.</div><br><div class="gmail_quote">'
    '<div dir="ltr" class="gmail_attr">On Mon, 2 Nov 2026 at 09:30, Acme via chatserver '
    '&lt;chat@localhost&gt; wrote:<br></div><blockquote class="gmail_quote">'
    "<p>Could you come in on Tuesday?</p><script>alert(1)</script></blockquote></div>"
)

# The attribution and the quote inside one element: as text, one line.
GMAIL_HTML_ONE_LINE = (
    "<p>Yes, Tuesday at 10 works.</p><div class=gmail_quote>On Mon, 2 Nov 2026, Acme"
    " wrote: Could you come in on Tuesday?</div>"
)
THUNDERBIRD_HTML = (
    "<p>Yes, Tuesday at 10 works.</p><blockquote type=cite cite=mid:x@localhost>"
    "Could you come in on Tuesday?</blockquote>"
)
# Attributions that mail-parser-reply does not know: Gmail's Spanish, Dutch
# and Polish wordings, its French one under a name with "le " in it (École,
# Skole), wrapped before the address, and Thunderbird's above its quote.
GMAIL_FR = """Yes, Tuesday at 10 works.

Le lun. 2 nov. 2026 à 09:30, École Jeanne d'Arc via chatserver <chat@localhost> a écrit :

> Could you come in on Tuesday?
"""
GMAIL_ES = """Yes, Tuesday at 10 works.

El lun, 2 nov 2026 a las 9:30, Acme via chatserver (<chat@localhost>) escribió:

> Could you come in on Tuesday?
"""
GMAIL_NL = """Yes, Tuesday at 10 works.

Op ma 2 nov 2026 om 09:30 schreef Ærø Skole Gymnasium via chatserver <
chat@localhost>:

> Could you come in on Tuesday?
"""
GMAIL_PL = """Yes, Tuesday at 10 works.

pon., 2 lis 2026 o 09:30 Acme via chatserver <chat@localhost> napisał(a):

> Could you come in on Tuesday?
"""
THUNDERBIRD_FR_HTML = (
    "<p>Yes, Tuesday at 10 works.</p><div class=moz-cite-prefix>Le 02/11/2026 à 09:30,"
    " École Jeanne d'Arc via chatserver a écrit&nbsp;:<br></div>"
    "<blockquote type=cite>Could you come in on Tuesday?</blockquote>"
)


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (GMAIL, None),
        (OUTLOOK, None),
        (OUTLOOK_NO_BLANK, None),
        (APPLE, None),
        (PLAIN_QUOTE, None),
        (SIGNATURE, None),
        ("", GMAIL_HTML),
        ("", GMAIL_HTML_ONE_LINE),
        ("", THUNDERBIRD_HTML),
        (GMAIL_FR, None),
        (GMAIL_ES, None),
        (GMAIL_NL, None),
        (GMAIL_PL, None),
        ("", THUNDERBIRD_FR_HTML),
    ],
    ids=[
        "gmail",
        "outlook",
        "outlook-no-blank-line",
        "apple-mail",
        "plain-quote",
        "signature",
        "html-only",
        "html-quote-on-one-line",
        "thunderbird-html",
        "gmail-french-ecole",
        "gmail-spanish",
        "gmail-dutch-wrapped",
        "gmail-polish",
        "thunderbird-french-html",
    ],
)
async def test_quoted_history_of_common_mail_programs_is_stripped(
    scene: Scene,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
    text: str,
    html: str | None,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    mail = reply(email, text, html=html)
    if html is not None:
        mail.clear_content()
        mail.set_content(html, subtype="html")
    await deliver(mail_in.port, mail)
    *_, (sender, body, via) = await bodies(scene)
    assert (sender, body, via) == ("cara", "Yes, Tuesday at 10 works.", "email")


async def test_an_html_only_reply_keeps_where_its_links_lead(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, mail_in: MailInServer
) -> None:
    """Words linked in an HTML-only reply become a Markdown link, so the
    message shows them linked; a link that is its own address stays the
    address."""
    email = await candidate_email(scene, notifier, smtp, clock)
    mail = reply(email, "")
    mail.clear_content()
    mail.set_content(
        '<p>Here is <a href="https://portfolio.example/cara">my portfolio</a>,'
        ' and <a href="https://cv.example/">https://cv.example/</a>.</p>',
        subtype="html",
    )
    await deliver(mail_in.port, mail)
    *_, (sender, body, via) = await bodies(scene)
    assert (sender, via) == ("cara", "email")
    assert (
        body == "Here is [my portfolio](https://portfolio.example/cara), and https://cv.example/."
    )
    shown = (await scene.alice.history(scene.conversation))[-1]["html"]
    assert '<a href="https://portfolio.example/cara"' in shown


# -- the webhook -----------------------------------------------------------------------


async def post_mail(
    client: httpx.AsyncClient, mail: EmailMessage | bytes, **headers: str
) -> httpx.Response:
    raw = mail if isinstance(mail, bytes) else mail.as_bytes()
    return await client.post(
        "/api/v1/inbound-email",
        content=raw,
        headers={**AUTH, "Content-Type": "message/rfc822", **headers},
    )


async def test_the_webhook_gives_the_same_results(
    scene: Scene,
    app: Any,
    host: Any,
    client: httpx.AsyncClient,
    settings: Settings,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    mail = reply(email, gmail_body("Webhook reply."), files=[("cert.png", PNG, "image/png")])

    taken = await post_mail(client, mail)
    assert taken.status_code == 202, taken.text
    assert taken.json()["result"] == "taken"
    assert taken.json()["message"]["via"] == "email"
    assert taken.json()["message"]["attachments"][0]["content_type"] == "image/png"
    again = await post_mail(client, mail)
    assert again.status_code == 202
    assert again.json()["result"] == "duplicate"
    assert again.json()["message"]["id"] == taken.json()["message"]["id"]

    dropped = await post_mail(
        client, reply(email, "Away", headers={"Auto-Submitted": "auto-replied"})
    )
    assert dropped.status_code == 202
    assert dropped.json()["result"] == "dropped"

    error_of(
        await post_mail(client, reply(email, "x", sender="mallory@evil.example")), 403, "forbidden"
    )
    address = reply_address(email)
    forged = address.replace("reply+", "reply+a", 1)
    error_of(await post_mail(client, reply(email, "x", to=forged)), 404, "not_found")
    error_of(
        await post_mail(client, reply(email, "x", to="someone@else.example")), 404, "not_found"
    )
    error_of(await post_mail(client, b"x" * (1024 * 1024 + 1)), 413, "too_large")
    error_of(
        await client.post(
            "/api/v1/inbound-email",
            content=b"{}",
            headers={**AUTH, "Content-Type": "application/json"},
        ),
        422,
        "invalid",
    )
    error_of(
        await client.post(
            "/api/v1/inbound-email",
            content=mail.as_bytes(),
            headers={"Content-Type": "message/rfc822"},
        ),
        401,
        "unauthorized",
    )
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 2

    await host.application("app-1", org="acme", candidate="cara", status="not_progressing")
    refused = await post_mail(client, reply(email, "Still interested?"))
    error_of(refused, 403, "not_allowed")
    assert await refusals(app) == 1
    assert "message.sent" in await audit_actions(host, "app-1")


async def test_a_reply_to_two_conversations_posts_in_each(
    scene: Scene,
    app: Any,
    host: Any,
    client: httpx.AsyncClient,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    second = await host.application(
        "app-2", org="acme", candidate="cara", status="interviewing", job="acme-job-2"
    )
    first_email = await candidate_email(scene, notifier, smtp, clock)
    await scene.alice.send(second["conversation_id"], "And about the other job?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    second_email = smtp.bag.to("cara@mail.example")[-1]
    both = reply(
        first_email,
        "Yes to both.",
        to=f"{reply_address(first_email)}, {reply_address(second_email)}",
    )
    response = await post_mail(client, both)
    assert response.status_code == 202, response.text
    for conversation in (scene.conversation, second["conversation_id"]):
        assert await count_rows(app, messages, conversation_id=conversation, via="email") == 1


def deeply_nested(email: EmailMessage, depth: int) -> bytes:
    """A reply whose text sits `depth` multipart/mixed parts deep."""
    opening = "".join(
        f'--N{i}\r\nContent-Type: multipart/mixed; boundary="N{i + 1}"\r\n\r\n'
        for i in range(depth)
    )
    closing = "".join(f"--N{i}--\r\n" for i in range(depth, -1, -1))
    text = f"--N{depth}\r\nContent-Type: text/plain\r\n\r\nDeep down.\r\n"
    headers = reply(email, "").as_bytes().split(b"\n\n", 1)[0].decode()
    headers = "\r\n".join(
        line.rstrip("\r")
        for line in headers.split("\n")
        if not line.lower().startswith(("content-type", "content-transfer", "mime-version"))
    )
    mime = 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="N0"\r\n\r\n'
    return (headers + "\r\n" + mime + opening + text + closing).encode()


async def test_mail_nested_too_deeply_is_refused_for_good(
    scene: Scene,
    app: Any,
    client: httpx.AsyncClient,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    mail_in: MailInServer,
) -> None:
    """Python's parser would recurse once a level and fail at about a
    thousand: a bound on the parts refuses such mail permanently (5xx,
    4xx JSON), so that no sender retries it for days."""
    email = await candidate_email(scene, notifier, smtp, clock)
    address = reply_address(email)
    for depth in (150, 1000, 2000):
        raw = deeply_nested(email, depth)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await send_raw(mail_in.port, raw, "cara@mail.example", address)
        assert refused.value.code == 550, refused.value
        assert "multipart" in refused.value.message
        error_of(await post_mail(client, raw), 422, "invalid")
    # Nested as mail programs nest, it is taken.
    await send_raw(mail_in.port, deeply_nested(email, 5), "cara@mail.example", address)
    assert (await bodies(scene))[-1] == ("cara", "Deep down.", "email")
    assert await count_rows(app, messages, conversation_id=scene.conversation) == 2


def test_reply_addresses_fit_and_survive_a_change_of_case(settings: Settings) -> None:
    tokens = ReplyTokens(settings)
    address = tokens.address("0123456789abcdef", generation=7)
    local = address.split("@")[0]
    assert len(local) <= 64
    read = tokens.read(address.upper().replace(DOMAIN.upper(), DOMAIN))
    assert (read.address_id, read.generation) == ("0123456789abcdef", 7)


async def test_the_transcript_marks_a_message_that_came_by_email(
    scene: Scene,
    client: httpx.AsyncClient,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    email = await candidate_email(scene, notifier, smtp, clock)
    response = await post_mail(client, reply(email, gmail_body("See you on Tuesday.")))
    assert response.status_code == 202, response.text
    await scene.alice.send(scene.conversation, "Great, see you then.")
    page = await scene.alice.client.get(f"/api/conversations/{scene.conversation}/transcript")
    assert page.status_code == 200
    entries = page.text.split('<li class="entry')
    [by_email] = [e for e in entries if "See you on Tuesday." in e]
    assert '<span class="via">by email</span>' in by_email
    assert all("by email" not in e for e in entries if "Great, see you then." in e)


@pytest.mark.parametrize("backend", ["embedded"])
async def test_the_demo_mailbox_replies_through_the_same_path(
    scene: Scene, app: Any, settings: Settings, clock: MovableClock
) -> None:
    """`chatserver demo`'s local mailbox: "reply to this email" posts the
    reply a mail program would write, quote and all, as an email reply."""
    from starlette.applications import Starlette

    from chatserver.errors import ChatError
    from chatserver.notify.transport import OutboxTransport
    from chatserver.web import mailbox
    from chatserver.web.responses import chat_error_handler

    demo = settings.with_(demo_mode=True)
    app.state.services.settings = demo
    notifier = Notifier(
        app.state.services.chat, demo, transport=OutboxTransport(demo.outbox_dir), clock=clock
    )
    await scene.alice.send(scene.conversation, "Could you come in on Tuesday?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [eml] = list(demo.outbox_dir.glob("*.eml"))
    page = Starlette(routes=mailbox.routes, exception_handlers={ChatError: chat_error_handler})
    page.state.services = app.state.services
    transport = httpx.ASGITransport(app=page)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        shown = await browser.get(f"/dev/mailbox/{eml.name}")
        assert 'data-testid="reply-text"' in shown.text
        # A browser names the page's origin on the form's POST (under
        # `no-referrer` Chromium sends `Origin: null`).
        assert shown.headers["referrer-policy"] == "same-origin"
        posted = await browser.post(
            f"/dev/mailbox/{eml.name}/reply",
            data={"text": "Tuesday is perfect."},
            follow_redirects=True,
        )
        assert posted.status_code == 200
        assert "Your reply was posted in the conversation." in posted.text
        for elsewhere in ("http://evil.example", "null"):
            foreign = await browser.post(
                f"/dev/mailbox/{eml.name}/reply",
                data={"text": "From elsewhere"},
                headers={"Origin": elsewhere},
            )
            assert foreign.status_code == 403
    *_, last = await bodies(scene)
    assert last == ("cara", "Tuesday is perfect.", "email")


# -- hostile input and a seeded model ---------------------------------------------------


async def test_crafted_mail_to_a_valid_address_gets_a_clear_answer_and_loses_nothing(
    scene: Scene,
    app: Any,
    client: httpx.AsyncClient,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    """Seeded random damage to a real reply (cut, spliced, bytes flipped,
    broken MIME and charsets): every answer is the error object or 202,
    never a 500, and what was posted is exactly what the answers say."""
    import random

    email = await candidate_email(scene, notifier, smtp, clock)
    address = reply_address(email)
    base = reply(
        email, gmail_body("Fine by me."), files=[("cert.png", PNG, "image/png")]
    ).as_bytes()
    crafted = [
        b"",
        b"\x00\xff" * 100,
        f"To: {address}\r\nFrom: cara@mail.example\r\n\r\n".encode(),
        f"To: {address}\r\nFrom: cara@mail.example\r\nContent-Type: text/plain; "
        "charset=x-no-such-charset\r\nMessage-ID: <c1@x>\r\n\r\n\xe9t\xe9".encode("latin-1"),
        f"To: {address}\r\nFrom: cara@mail.example\r\nMessage-ID: <c2@x>\r\nContent-Type: "
        'multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n".encode(),
        f"To: {address}\r\nFrom: =?utf-8?q?broken?= <cara@mail.example\r\n\r\nhi".encode(),
        f"To: {address}\r\nFrom: cara@mail.example, mallory@evil.example\r\n\r\nhi".encode(),
    ]
    rng = random.Random(1414)
    for _ in range(40):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            action = rng.choice(("flip", "cut", "splice"))
            if action == "flip":
                data[at] = rng.randrange(256)
            elif action == "cut":
                del data[at : at + rng.randint(1, 200)]
            else:
                data[at:at] = rng.choice((b"\r\n", b"\r\n\r\n", b"--", b"=?", b"\x00", b"<>"))
        crafted.append(bytes(data))
    posted = set()
    for raw in crafted:
        response = await post_mail(client, raw)
        assert response.status_code in (202, 403, 404, 409, 413, 422), response.text
        body = response.json()
        if response.status_code == 202:
            assert body["result"] in ("taken", "duplicate", "dropped"), body
            if "message" in body:
                posted.add(body["message"]["id"])
        else:
            assert set(body) == {"error"}
            assert body["error"]["message"]
    stored = {m["id"] for m in await scene.alice.history(scene.conversation) if m["via"] == "email"}
    assert stored == posted


async def test_a_seeded_run_of_replies_matches_a_model(
    app: Any,
    host: Any,
    client: httpx.AsyncClient,
    new_client: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    """Twelve conversations of one organisation, six candidates with two
    applications each; replies by email (some redelivered, some after a
    status change, some from the wrong address) against a model of what
    each conversation must hold and how many explanations were owed."""
    import random

    from tests.helpers import sign_in_staff

    rng = random.Random(2026)
    await host.staff("alice", org="acme")
    conversations: dict[int, str] = {}
    for n in range(12):
        made = await host.application(
            f"app-{n}",
            org="acme",
            candidate=f"cand{n % 6}",
            status="interviewing",
            job=f"job-{n}",
            job_title=f"Role {n:02d}",
        )
        conversations[n] = made["conversation_id"]
    alice = await sign_in_staff(host, new_client(), "alice")
    for conversation in conversations.values():
        await alice.send(conversation, "Hello from Alice")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    email_of: dict[int, EmailMessage] = {}
    for email in smtp.bag.messages():
        n = int(re.search(r"Role (\d\d)", subject(email)).group(1))  # type: ignore[union-attr]
        email_of[n] = email
    assert sorted(email_of) == list(range(12))
    expected = dict.fromkeys(range(12), 1)
    status = dict.fromkeys(range(12), "interviewing")
    by_email = dict.fromkeys(range(12), 0)
    explained = 0
    posted: list[EmailMessage] = []
    for step in range(60):
        n = rng.randrange(12)
        roll = rng.random()
        if roll < 0.15:
            status[n] = rng.choice(("interviewing", "not_progressing"))
            await host.application(
                f"app-{n}",
                org="acme",
                candidate=f"cand{n % 6}",
                status=status[n],
                job=f"job-{n}",
                job_title=f"Role {n:02d}",
            )
        elif roll < 0.3 and posted:
            # A redelivery of something already posted: the original again.
            response = await post_mail(client, rng.choice(posted))
            assert response.status_code == 202, response.text
            assert response.json()["result"] == "duplicate"
        elif roll < 0.4:
            mail = reply(email_of[n], f"step {step}", sender="intruder@evil.example")
            error_of(await post_mail(client, mail), 403, "forbidden")
        else:
            mail = reply(email_of[n], f"Reply {step}")
            response = await post_mail(client, mail)
            # Refused by the policy, or past the hour's replies by email.
            if status[n] == "not_progressing" or by_email[n] >= REPLIES_PER_WINDOW:
                error_of(response, 403, "not_allowed")
                explained += 1
            else:
                assert response.status_code == 202, response.text
                expected[n] += 1
                by_email[n] += 1
                posted.append(mail)
    for n, count in expected.items():
        # What people wrote: status changes add system lines besides.
        written = [
            await count_rows(app, messages, conversation_id=conversations[n], sender_kind=kind)
            for kind in ("staff", "candidate")
        ]
        assert sum(written) == count
    assert await refusals(app) == explained


async def test_history_bounds_past_every_possible_seq_answer_normally(scene: Scene) -> None:
    """The hostile-input test found `before=2327221049` answering 500 on
    PostgreSQL (seq is a 32-bit column there); such bounds now mean what
    they say."""
    await scene.alice.send(scene.conversation, "one")
    assert [m["body"] for m in await scene.alice.history(scene.conversation, before=2**40)] == [
        "one"
    ]
    after = await scene.alice.history(scene.conversation, before=2**40, after=0)
    assert [m["body"] for m in after] == ["one"]
    assert await scene.alice.history(scene.conversation, after=2**40) == []
