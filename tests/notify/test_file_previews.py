"""An email about a message with files names them: a message that is only
a file ("📎 cv.pdf", as the inbox shows it) is not an empty preview, and a
message with text and files shows the text, then the file names."""

from __future__ import annotations

import re
from datetime import time
from email.message import EmailMessage

from chatserver.notify.worker import Notifier
from tests.conftest import Scene
from tests.helpers import Person, upload
from tests.notify.conftest import MovableClock, SmtpServer, html_of, text_of
from tests.notify.test_digest import NEW_YORK, choose, next_local

DELAY = 120.0
PDF = (
    b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
    b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\n"
    b"trailer <</Root 1 0 R>>\n%%EOF\n"
)


async def send_files(person: Person, conversation: str, body: str, *names: str) -> None:
    ids = []
    for name in names:
        uploaded = await upload(person, name, PDF, "application/pdf")
        assert uploaded.status_code == 201, uploaded.text
        ids.append(uploaded.json()["id"])
    sent = await person.send(conversation, body, attachments=ids)
    assert sent.status_code == 201, sent.text


def plain(email: EmailMessage) -> str:
    """The text part, its lines ended by "\\n" (it arrives with CRLF)."""
    return text_of(email).replace("\r\n", "\n")


def lines_after(text: str, sender: str) -> list[str]:
    """The preview lines under `sender (time):` in an email's text part."""
    found = re.search(rf"^{re.escape(sender)} \([^)]*\):\n((?:  .*\n)*)", text, re.M)
    assert found is not None, text
    return [line.strip() for line in found.group(1).splitlines()]


async def test_a_message_that_is_only_a_file_names_it(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await send_files(scene.cara, scene.conversation, "", "cv.pdf")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("alice@acme.example")
    assert lines_after(plain(email), "Cara") == ["📎 cv.pdf"]
    assert "📎 cv.pdf" in html_of(email)


async def test_text_and_files_show_the_text_then_the_names(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await send_files(
        scene.alice, scene.conversation, "Here are the **details**.", "contract.pdf", "map.pdf"
    )
    await send_files(scene.alice, scene.conversation, "", "timetable.pdf")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("cara@mail.example")
    text = plain(email)
    shown = re.findall(r"^  (.*)$", text, re.M)
    assert shown == ["Here are the details.", "📎 contract.pdf, map.pdf", "📎 timetable.pdf"]
    html = html_of(email)
    assert html.index("Here are the details.") < html.index("📎 contract.pdf, map.pdf")
    assert "📎 timetable.pdf" in html


async def test_the_digest_names_the_files_of_a_file_only_message(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await choose(scene.alice, email_notifications="daily", timezone="America/New_York")
    await send_files(scene.cara, scene.conversation, "", "cv.pdf")
    clock.set(next_local(time(7, 0, 1), NEW_YORK))
    await notifier.run_once()
    [digest] = smtp.bag.to("alice@acme.example")
    text = plain(digest)
    entry = re.search(r"^\* Cara · .*\n((?:  .*\n)*)", text, re.M)
    assert entry is not None, text
    assert entry.group(1).splitlines()[0] == "  📎 cv.pdf"
    assert "📎 cv.pdf" in html_of(digest)
