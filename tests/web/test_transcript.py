"""The transcript as a record (issue 11 item 7, SPEC 5a): complete, in the
viewer's timezone with the zone named, events from the audit trail in time
order, no internal ids, deleted text nowhere, and the same as a PDF."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from chatserver.web import transcript as transcript_web
from tests.conftest import Scene
from tests.helpers import Host, Person, delete_message, error_of, upload
from tests.web.test_attachments import pdf

SECRET = "the interview panel thinks she is weak"


async def sent(person: Person, conversation: str, body: str, **extra: Any) -> dict[str, Any]:
    response = await person.send(conversation, body, **extra)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def a_conversation_with_everything(scene: Scene, host: Host) -> dict[str, Any]:
    await host.staff("alice", org="acme", name="Alice Recruiter", timezone="Asia/Tokyo")
    file = (await upload(scene.alice, "contract.pdf", pdf())).json()
    first = await sent(scene.alice, scene.conversation, "Hello **Cara**", attachments=[file["id"]])
    reply = await sent(scene.cara, scene.conversation, "Thanks, Monday suits me.")
    regret = await sent(scene.bob, scene.conversation, SECRET)
    assert (await delete_message(scene.bob, regret["id"], "everyone")).status_code == 204
    await host.application("app-1", org="acme", candidate="cara", status="offered")
    ended = await scene.alice.post(f"/api/conversations/{scene.conversation}/end")
    assert ended.status_code == 200, ended.text
    reopening = await sent(scene.alice, scene.conversation, "One more thing: the start date.")
    # Alice tidies her own view: the record keeps it.
    assert (await delete_message(scene.alice, reply["id"], "me")).status_code == 204
    return {"file": file, "first": first, "reply": reply, "regret": regret, "last": reopening}


def entries(html: str) -> list[str]:
    """The transcript's entries in order, as plain text."""
    found = re.findall(r'<li class="(?:entry[^"]*|event)">(.*?)</li>', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in found]


def internal_ids(things: dict[str, Any], conversation: str) -> list[str]:
    ids = [conversation, "app-1", things["file"]["id"]]
    ids += [things[k]["id"] for k in ("first", "reply", "regret", "last")]
    return ids


async def test_the_transcript_is_a_complete_record(scene: Scene, host: Host) -> None:
    things = await a_conversation_with_everything(scene, host)
    response = await scene.alice.client.get(f"/api/conversations/{scene.conversation}/transcript")
    assert response.status_code == 200
    html = response.text
    lines = entries(html)
    assert len(lines) == 8, lines
    expected = [
        r"^\d\d:\d\d JST Application received \(status: Interviewing\)\.$",
        r"^Alice Recruiter Hiring team \d\d:\d\d JST Hello Cara Attachment: contract\.pdf",
        r"^Cara Candidate \d\d:\d\d JST Thanks, Monday suits me\. You deleted this message",
        r"^Bob Manager Hiring team \d\d:\d\d JST Message deleted for everyone by Bob Manager on",
        r"^\d\d:\d\d JST Application status changed from Interviewing to Offered\.$",
        r"^\d\d:\d\d JST Alice Recruiter ended the conversation\.$",
        r"^\d\d:\d\d JST Alice Recruiter reopened the conversation\.$",
        r"^Alice Recruiter Hiring team \d\d:\d\d JST One more thing: the start date\.$",
    ]
    for line, pattern in zip(lines, expected, strict=True):
        assert re.search(pattern, line), (pattern, line)
    assert "Hello <strong>Cara</strong>" in html
    assert "All times are in Asia/Tokyo (JST, UTC+09:00)." in html
    assert SECRET not in html
    for internal in internal_ids(things, scene.conversation):
        assert internal not in html, internal
    # The candidate's own transcript: the same record, in her zone (UTC).
    mine = await scene.cara.client.get(f"/api/conversations/{scene.conversation}/transcript")
    assert "All times are in UTC." in mine.text
    assert "You deleted this message" not in mine.text
    assert len(entries(mine.text)) == 8
    assert SECRET not in mine.text


async def test_the_transcript_downloads_as_a_pdf(scene: Scene, host: Host) -> None:
    things = await a_conversation_with_everything(scene, host)
    response = await scene.alice.client.get(
        f"/api/conversations/{scene.conversation}/transcript.pdf"
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        'attachment; filename="transcript-cara-teacher-of-mathematics.pdf"'
    )
    assert response.content.startswith(b"%PDF-")
    text = " ".join(
        page.extract_text() or "" for page in PdfReader(io.BytesIO(response.content)).pages
    )
    flat = " ".join(text.split())
    for wanted in (
        "Cara — Teacher of Mathematics",
        "Asia/Tokyo (JST, UTC+09:00)",
        "Thanks, Monday suits me.",
        "Message deleted for everyone by Bob Manager",
        "Application status changed from Interviewing to Offered.",
        "Alice Recruiter ended the conversation.",
        "One more thing: the start date.",
        "Page 1 of 1",
    ):
        assert wanted in flat, wanted
    assert "weak" not in flat
    for internal in internal_ids(things, scene.conversation):
        assert internal not in flat, internal


async def test_a_transcript_too_long_to_make_is_refused_before_it_is_read(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversation flooded with messages cannot make a transcript
    request that holds a worker: past the bound it is `too_large` at once."""
    monkeypatch.setattr(transcript_web, "HTML_MAX_MESSAGES", 3)
    monkeypatch.setattr(transcript_web, "PDF_MAX_ENTRIES", 2)
    for n in range(3):
        await sent(scene.alice, scene.conversation, f"Note {n}")
    page = f"/api/conversations/{scene.conversation}/transcript"
    assert (await scene.alice.client.get(page)).status_code == 200
    refused = error_of(await scene.alice.client.get(f"{page}.pdf"), 413, "too_large")
    assert "at most 2 messages" in refused["message"]
    await sent(scene.alice, scene.conversation, "One more")
    refused = error_of(await scene.alice.client.get(page), 413, "too_large")
    assert "at most 3 messages" in refused["message"]


async def test_pdfs_beyond_the_queue_are_answered_rate_limited(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sent(scene.alice, scene.conversation, "Hello")
    monkeypatch.setattr(transcript_web, "_pdfs_waiting", asyncio.Semaphore(0))
    response = await scene.alice.client.get(
        f"/api/conversations/{scene.conversation}/transcript.pdf"
    )
    refused = error_of(response, 429, "rate_limited")
    assert refused["retry_after_ms"] == transcript_web.PDF_RETRY_MS


async def test_the_pdf_is_refused_to_strangers(scene: Scene, client: httpx.AsyncClient) -> None:
    path = f"/api/conversations/{scene.conversation}/transcript.pdf"
    foreign = await scene.mallory.client.get(path)
    missing = await scene.mallory.client.get("/api/conversations/0123456789abcdef/transcript.pdf")
    error_of(foreign, 404, "not_found")
    assert foreign.json() == missing.json()
    error_of(await client.get(path), 401, "unauthorized")


async def test_drawing_a_pdf_fetches_nothing() -> None:
    """However a message's HTML got there, the PDF renderer requests no URL:
    a listener on loopback sees no connection."""
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    page = (
        f'<html><head><link rel="stylesheet" href="{url}/s.css">'
        f"<style>@import url({url}/i.css); body {{ background: url({url}/b.png) }}</style>"
        f'</head><body><img src="{url}/x.png"><img src="file:///etc/passwd">'
        f'<a href="{url}/link">link</a></body></html>'
    )
    async with server:
        drawn = await asyncio.to_thread(transcript_web.render_pdf, page)
    assert drawn.startswith(b"%PDF-")
    assert connections == 0
