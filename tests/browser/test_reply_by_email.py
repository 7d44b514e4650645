"""Reply by email as staff see it (issue 14, "Visible"): the candidate
answers the notification email from her mail program, and the reply
appears live in the conversation Alice has open, marked "by email"; the
messages written in the app are not marked.

A server of its own, with reply addresses on and emails due at once; the
email is the one the notifier wrote to the outbox folder (no SMTP server
configured), and the reply goes in through the webhook, as a mail
provider would post it. The demo's local mailbox (`chatserver demo`, a
server of its own too) replies from its "Reply to this email" form in the
browser, as someone trying the demo does."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, expect

from tests.browser.conftest import API_KEY, Ats, Browsers, Server
from tests.helpers import eventually

pytestmark = pytest.mark.browser

MESSAGE = '[data-testid="message"][data-seq]'
# The notifier is due after 1 s and looks every 0.2 s; a loaded machine
# writes the email within seconds.
EMAIL_SECONDS = 30.0


@pytest.fixture(scope="module")
def mail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("reply-by-email"),
        extra_env={
            "CHAT_REPLY_DOMAIN": "reply.localhost",
            "CHAT_NOTIFY_DELAY_SECONDS": "1",
            "CHAT_NOTIFY_POLL_SECONDS": "0.2",
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`chatserver demo`, which alone mounts the local mailbox."""
    server = Server(
        tmp_path_factory.mktemp("mailbox"),
        extra_env={"CHAT_NOTIFY_DELAY_SECONDS": "1", "CHAT_NOTIFY_POLL_SECONDS": "0.2"},
        command=[sys.executable, "-m", "chatserver", "demo", "--host", "127.0.0.1"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _eml_to(server: Server, address: str) -> Path:
    """The file of the first email the notifier wrote to `address` (bounded
    wait: it is written by another process)."""
    outbox = Path(server.env["CHAT_DATA_DIR"]) / "outbox"

    def written() -> Path | None:
        for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if address in str(message["To"]):
                return path
        return None

    return eventually(written, within=EMAIL_SECONDS, what=f"an email to {address}")


def _email_to(server: Server, address: str) -> EmailMessage:
    """The first email the notifier wrote to `address`."""
    path = _eml_to(server, address)
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_reply_by_email_appears_live_marked_by_email(
    browsers: Browsers, mail_server: Server
) -> None:
    ats = Ats(mail_server)
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Are you free on Tuesday at 10?")
    email = _email_to(mail_server, f"{cara.candidate_id}@mail.example")
    reply_to = str(email["Reply-To"])
    assert reply_to.endswith("@reply.localhost"), reply_to

    inbox = browsers.open(ats.staff_link(alice))
    inbox.locator(f'[data-conversation="{cara.conversation}"]').click()
    expect(inbox.locator(MESSAGE)).to_have_count(1)

    reply = EmailMessage()
    reply["From"] = str(email["To"])
    reply["To"] = reply_to
    reply["Subject"] = f"Re: {email['Subject']}"
    reply["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example>"
    reply.set_content(
        "Yes, Tuesday at 10 works for me.\n\n"
        f"On {email['Date']}, {email['From']} wrote:\n> Are you free on Tuesday at 10?\n"
    )
    answer = httpx.post(
        f"{mail_server.url}/api/v1/inbound-email",
        content=reply.as_bytes(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "message/rfc822"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["result"] == "taken"

    by_email = inbox.locator(MESSAGE, has_text="Yes, Tuesday at 10 works for me.")
    expect(by_email).to_be_visible()
    expect(by_email.get_by_test_id("via-email")).to_be_visible()
    expect(by_email.get_by_test_id("via-email")).to_have_text("by email")
    # The quoted history was cut; the app's own message carries no mark.
    expect(inbox.locator(MESSAGE, has_text="wrote:")).to_have_count(0)
    in_app = inbox.locator(MESSAGE, has_text="Are you free on Tuesday at 10?")
    expect(in_app.get_by_test_id("via-email")).to_be_hidden()
    # After a reload (from history, not the live frame) the mark stays.
    inbox.reload()
    expect(by_email.get_by_test_id("via-email")).to_be_visible()


def test_a_reply_from_the_demo_mailbox_page_is_posted_in_the_conversation(
    browsers: Browsers, demo_server: Server
) -> None:
    """The mailbox page's "Reply to this email" form, submitted by Chromium:
    its POST carries the page's real origin (the page's referrer policy lets
    a same-origin request say where it comes from), so the reply is posted
    and shows in the conversation Alice has open, marked "by email". The
    page keeps to its Content-Security-Policy: no inline style, so Chromium
    logs no error, before or after the reply."""
    ats = Ats(demo_server)
    alice = ats.staff("Alice Recruiter")
    cara = ats.application("cara", "Cara Candidate")
    ats.staff_says(alice, cara.conversation, "Could you send your references?")
    eml = _eml_to(demo_server, f"{cara.candidate_id}@mail.example")

    inbox = browsers.open(ats.staff_link(alice))
    inbox.locator(f'[data-conversation="{cara.conversation}"]').click()
    expect(inbox.locator(MESSAGE)).to_have_count(1)

    mailbox = browsers.open("about:blank")
    logged: list[str] = []

    def log(message: ConsoleMessage) -> None:
        if message.type == "error":
            logged.append(f"{message.text} ({message.location.get('url')})")

    mailbox.on("console", log)
    mailbox.goto(f"{demo_server.url}/dev/mailbox/{eml.name}")
    expect(mailbox.get_by_test_id("email-subject")).to_be_visible()
    # The email's HTML version is shown at the size the stylesheet gives it.
    frame = mailbox.locator("iframe").bounding_box()
    assert frame is not None
    assert frame["height"] >= 400, frame
    mailbox.get_by_test_id("reply-text").fill("References attached to my CV, see page 2.")
    mailbox.get_by_test_id("reply-send").click()
    expect(mailbox.get_by_test_id("reply-result")).to_have_text(
        "Your reply was posted in the conversation."
    )

    by_email = inbox.locator(MESSAGE, has_text="References attached to my CV, see page 2.")
    expect(by_email).to_be_visible()
    expect(by_email.get_by_test_id("via-email")).to_have_text("by email")
    assert logged == [], "the mailbox page logged errors"
