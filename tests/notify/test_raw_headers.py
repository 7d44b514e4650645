"""The headers as they go out, byte for byte: what a mail program reads.

Python's parser decodes RFC 2047 encoded words, so a test that reads an
email back with it cannot tell a raw `List-Unsubscribe: <https://…>` from
one split into `=?utf-8?q?…?=` pieces that Gmail, Yahoo and Apple Mail do
not take for a URL (RFC 8058). These tests look at the bytes the SMTP
server received and the outbox's .eml file.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from chatserver.chat.presence import MemoryPresence
from chatserver.notify.transport import OutboxTransport
from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.helpers import Host
from tests.notify.conftest import MovableClock, SmtpServer

DELAY = 120.0
# An en dash and a typographic apostrophe: non-ASCII words next to each other.
JOB_TITLE = "Lehrerin für Mathematik \u2013 Zoë\u2019s class"


def headers_of(raw: bytes) -> list[bytes]:
    """The header section's lines, CRLF-terminated as on the wire."""
    head, separator, _ = raw.partition(b"\r\n\r\n")
    assert separator, raw[:200]
    return head.split(b"\r\n")


def assert_one_click_headers_raw(raw: bytes) -> None:
    """List-Unsubscribe is `<url>` on one line, as written; the other
    headers are unchanged: ASCII, within 78 characters a line, a
    non-ASCII Subject RFC 2047-encoded."""
    assert raw.isascii()
    lines = headers_of(raw)
    [unsubscribe] = [line for line in lines if line.startswith(b"List-Unsubscribe:")]
    found = re.fullmatch(
        rb"List-Unsubscribe: <(http://testserver/email/unsubscribe\?token=\S+)>", unsubscribe
    )
    assert found is not None, unsubscribe
    assert b"=?" not in unsubscribe
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    # The line after it starts a header of its own: nothing folded onto it.
    following = lines[lines.index(unsubscribe) + 1]
    assert not following[:1].isspace(), following
    parsed = message_from_bytes(raw, policy=policy.default)
    assert str(parsed["List-Unsubscribe"]) == f"<{found.group(1).decode()}>"
    # Everything else still folds at 78 and encodes non-ASCII text.
    assert all(len(line) <= 78 for line in lines if line is not unsubscribe)
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i][:1].isspace())
    assert b"=?utf-8?" in b"".join(lines[start:end])
    assert JOB_TITLE in " ".join(str(parsed["Subject"]).split())


async def emails_of_an_exchange(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> list[bytes]:
    """Alice writes, Cara answers, and the notifier runs: the three emails
    (Cara's, Alice's and Bob's) as SMTP carried them."""
    await scene.alice.send(scene.conversation, "Could you do Monday?")
    await scene.cara.send(scene.conversation, "Monday suits me.")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    raws = smtp.bag.raw_messages()
    assert len(raws) == 3
    return raws


async def test_smtp_carries_list_unsubscribe_raw(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await host.application("app-1", status="interviewing", job_title=JOB_TITLE)
    raws = await emails_of_an_exchange(scene, notifier, smtp, clock)
    for raw in raws:
        assert_one_click_headers_raw(raw)


async def test_the_outbox_file_carries_list_unsubscribe_raw(
    scene: Scene,
    host: Host,
    app: Any,
    settings: Settings,
    clock: MovableClock,
    tmp_path: Path,
) -> None:
    await host.application("app-1", status="interviewing", job_title=JOB_TITLE)
    notifier = Notifier(
        app.state.services.chat,
        settings,
        MemoryPresence(),
        transport=OutboxTransport(tmp_path / "outbox"),
        clock=clock,
    )
    await scene.alice.send(scene.conversation, "Could you do Monday?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    assert_one_click_headers_raw(eml.read_bytes())


# Names that read as address lists, long enough that their header is folded.
POSING_CANDIDATE = (
    'Cara <cara@evil.example>, "Mallory" Bcc: =?utf-8?q?x=40evil.example?= Jones, '
    "Head of Sixth Form"
)
POSING_ORG = 'Acme <hr@evil.example>, "Northfield Academy and Sixth Form College" Trust'


async def test_a_name_that_reads_as_addresses_stays_one_display_name_on_the_wire(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    """Python's folding dropped the quotes of a long display name, so the
    bytes said `To: Cara <cara@evil.example>, … <cara@mail.example>`: two
    mailboxes to a mail program (Reply All wrote to the first)."""
    body = {
        "org": {"id": "acme", "name": POSING_ORG},
        "job": {"id": "acme-job-1", "title": "Teacher of Mathematics"},
        "candidate": {"id": "cara", "name": POSING_CANDIDATE, "email": "cara@mail.example"},
        "status": "interviewing",
        "applied_at": "2026-11-02T09:30:00Z",
    }
    response = await host.client.put("/api/v1/applications/app-1", json=body, headers=host.auth)
    assert response.status_code == 200, response.text
    await scene.alice.send(scene.conversation, "Could you do Monday?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [raw] = [raw for raw in smtp.bag.raw_messages() if b"cara@mail.example" in raw]
    lines = headers_of(raw)
    assert all(len(line) <= 78 for line in lines if not line.startswith(b"List-Unsubscribe:"))
    for header in ("To", "From"):
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{header}:".encode()))
        end = next(i for i in range(start + 1, len(lines)) if not lines[i][:1].isspace())
        value = b"".join(lines[start:end]).decode().partition(":")[2]
        # Read as a mail program reads the header (compat32 and the modern parser).
        assert [spec for _, spec in getaddresses([value])] == [
            "cara@mail.example" if header == "To" else "chat@localhost"
        ], value
    parsed = message_from_bytes(raw, policy=policy.default)
    [to] = parsed["To"].addresses
    [sender] = parsed["From"].addresses
    assert to.addr_spec == "cara@mail.example"
    assert sender.addr_spec == "chat@localhost"
    assert "<cara@evil.example>" in to.display_name
    assert "<hr@evil.example>" in sender.display_name


# A name holding text that looks like RFC 2047 encoded words: a line break
# and a Bcc, and a bidi override (which names may not hold).
ENCODED_LOOKING = "Cara =?utf-8?q?=0D=0ABcc:_x@evil.example?= =?utf-8?b?4oCu?=gnp.exe"


async def test_a_name_that_looks_like_encoded_words_is_sent_as_that_text(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    """Python decoded the encoded words of a header given as text: Cara's
    `To` held a line break and failed every email to her, and the Subject
    naming her carried a bidi override to her colleagues."""
    await host.application("app-1", status="interviewing", candidate_name=ENCODED_LOOKING)
    raws = await emails_of_an_exchange(scene, notifier, smtp, clock)
    for raw in raws:
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Bcc"] is None
        assert "\u202e" not in str(parsed["Subject"]) + str(parsed["To"])
    [to_cara] = [raw for raw in raws if b"cara@mail.example" in raw]
    [cara] = message_from_bytes(to_cara, policy=policy.default)["To"].addresses
    assert cara.addr_spec == "cara@mail.example"
    # The text itself (Python's reader puts a space where encoded words meet).
    assert unspaced(cara.display_name) == unspaced(ENCODED_LOOKING)
    for raw in raws:
        if raw is not to_cara:
            subject = str(message_from_bytes(raw, policy=policy.default)["Subject"])
            assert unspaced(subject).startswith(unspaced(ENCODED_LOOKING)), subject


def unspaced(text: str) -> str:
    return "".join(text.split())
