"""SPEC 6 and 5a at the HTTP level (no browser): which page each person
gets, what strangers get, the security headers, and the transcript.
Runs in-process on both backends like the API tests."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.conftest import Scene
from tests.helpers import Host, error_of, open_link

PAGES = ("/inbox", "/settings", "/c/anything", "/applications/app-1/messages")


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors" in csp


def assert_no_inline_code(html: str) -> None:
    """The CSP would block them anyway; the pages must not need them."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)


def page_summary(text: str) -> dict[str, Any]:
    """The conversation the page hands to its script, from `data-summary`."""
    found = re.search(r"data-summary='([^']*)'", text)
    assert found, "the page carries no conversation"
    return dict(json.loads(html.unescape(found.group(1))))


async def test_strangers_get_a_friendly_401_page(client: httpx.AsyncClient) -> None:
    for path in PAGES:
        response = await client.get(path)
        assert response.status_code == 401, path
        assert "text/html" in response.headers["content-type"]
        assert "not signed in" in response.text
        assert_page_headers(response)
    landing = await client.get("/")
    assert landing.status_code == 200
    assert "link in the email" in landing.text


async def test_each_person_lands_on_their_own_page(scene: Scene) -> None:
    staff_home = await scene.alice.client.get("/")
    assert (staff_home.status_code, staff_home.headers["location"]) == (303, "/inbox")
    candidate_home = await scene.cara.client.get("/")
    assert candidate_home.headers["location"] == f"/c/{scene.conversation}"
    assert (await scene.cara.client.get("/inbox")).headers["location"] == "/"

    for who, path in (
        (scene.alice, "/inbox"),
        (scene.alice, f"/c/{scene.conversation}"),
        (scene.alice, "/applications/app-1/messages"),
        (scene.alice, "/settings"),
        (scene.cara, f"/c/{scene.conversation}"),
        (scene.cara, "/settings"),
    ):
        page = await who.client.get(path)
        assert page.status_code == 200, (who.id, path, page.text)
        assert_page_headers(page)
        assert_no_inline_code(page.text)
        assert f'data-csrf="{who.me["csrf_token"]}"' in page.text
        # One heading names the page for a screen reader's list of headings.
        assert len(re.findall(r"<h1\b", page.text)) == 1, path


def back_link(text: str) -> str:
    found = re.search(r'<a href="([^"]*)" id="back-to-messages">', text)
    assert found, "the settings page has no Back to messages link"
    return html.unescape(found.group(1))


async def test_settings_back_link_returns_only_to_our_own_messages_pages(scene: Scene) -> None:
    """Rendered by the server from `?back=`, so it is right before any script
    runs; anything but one of this site's messages pages goes to the start."""
    conversation = f"/c/{scene.conversation}"
    for back, expected in (
        (None, "/"),
        ("/inbox", "/inbox"),
        (f"{conversation}?filter=messaged&q=a%20b", f"{conversation}?filter=messaged&q=a%20b"),
        ("/applications/app-1/messages", "/applications/app-1/messages"),
        ("https://evil.example/c/1", "/"),
        ("//evil.example/inbox", "/"),
        ("/c/\\evil.example", "/"),
        ("/c//evil.example", "/"),
        ("/settings", "/"),
        ("/api/me", "/"),
        ("javascript:alert(1)", "/"),
        ('/inbox?x="><script>', '/inbox?x="><script>'),
    ):
        params = {} if back is None else {"back": back}
        page = await scene.alice.client.get("/settings", params=params)
        assert page.status_code == 200
        assert back_link(page.text) == expected, back


async def test_others_conversations_answer_like_missing_ones(scene: Scene) -> None:
    for who, path in (
        (scene.mallory, f"/c/{scene.conversation}"),
        (scene.mallory, "/applications/app-1/messages"),
        (scene.cara, f"/c/{scene.other_conversation}"),
        (scene.cara, "/applications/app-1/messages"),
        (scene.alice, "/c/no-such-conversation"),
        (scene.alice, "/applications/%00/messages"),
        (scene.alice, "/applications/app-1%0A%00/messages"),
    ):
        page = await who.client.get(path)
        assert page.status_code == 404, (who.id, path)
        assert "can't find that conversation" in page.text
        assert "Cara" not in page.text


async def test_the_candidate_page_names_the_organisation_and_job(scene: Scene) -> None:
    page = await scene.cara.client.get(f"/c/{scene.conversation}")
    summary = page_summary(page.text)
    assert summary["org"]["name"] == "Acme"
    assert summary["job"]["title"] == "Teacher of Mathematics"
    assert (summary["can_send"], summary["send_disabled_reason"]) == (True, None)


def switcher_links(text: str) -> list[tuple[str, bool, str]]:
    """The candidate page's conversation links: (conversation id, whether
    it is the current page, the link's text without tags and spaces)."""
    nav = re.search(r'<nav class="switcher".*?</nav>', text, re.S)
    if nav is None:
        return []
    return [
        (conversation, current != "", " ".join(re.sub(r"<[^>]+>", " ", inner).split()))
        for conversation, current, inner in re.findall(
            r'<a href="/c/([^"]+)"( aria-current="page")?>(.*?)</a>', nav.group(0), re.S
        )
    ]


async def test_a_candidate_with_two_applications_can_go_back_to_either(
    scene: Scene, host: Host
) -> None:
    """The second application's link, opened in the same browser, adds to
    the session: both conversations stay a click away, newest first, the
    other's unread count shown."""
    assert switcher_links((await scene.cara.client.get(f"/c/{scene.conversation}")).text) == []
    second = await host.application(
        "app-2", org="globex", candidate="cara", job="globex-job-2", job_title="Lab <Technician>"
    )
    await open_link(scene.cara.client, await host.candidate_link("app-2"))
    await scene.alice.send(scene.conversation, "One for Cara")
    await scene.alice.send(scene.conversation, "Two for Cara")

    page = await scene.cara.client.get(f"/c/{second['conversation_id']}")
    assert switcher_links(page.text) == [
        (scene.conversation, False, "Teacher of Mathematics Acme 2 , 2 unread"),
        (second["conversation_id"], True, "Lab &lt;Technician&gt; Globex"),
    ]
    first = await scene.cara.client.get(f"/c/{scene.conversation}")
    assert [(c, current) for c, current, _ in switcher_links(first.text)] == [
        (scene.conversation, True),
        (second["conversation_id"], False),
    ]
    # Staff pages never carry it.
    assert switcher_links((await scene.alice.client.get(f"/c/{scene.conversation}")).text) == []


async def test_a_disabled_composer_carries_the_policy_reason(scene: Scene, host: Host) -> None:
    await host.application("app-1", org="acme", candidate="cara", status="withdrawn")
    page = await scene.cara.client.get(f"/c/{scene.conversation}")
    summary = page_summary(page.text)
    assert summary["can_send"] is False
    assert summary["send_disabled_reason"] == (
        "You have withdrawn your application, so this conversation is read-only."
    )


async def test_transcript_prints_the_whole_conversation_in_the_viewers_timezone(
    scene: Scene, host: Host
) -> None:
    await host.staff("alice", org="acme", name="Alice Recruiter", timezone="Asia/Tokyo")
    bodies = ["Hello **Cara**", "<script>alert(1)</script>", "Bye"]
    for body in bodies:
        assert (await scene.alice.send(scene.conversation, body)).status_code == 201
    sent = await scene.alice.history(scene.conversation)
    hidden = sent[2]["id"]
    response = await scene.alice.client.delete(
        f"/api/messages/{hidden}", params={"for": "me"}, headers=scene.alice.csrf
    )
    assert response.status_code == 204

    response = await scene.alice.client.get(f"/api/conversations/{scene.conversation}/transcript")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"] == (
        'inline; filename="transcript-cara-teacher-of-mathematics.html"'
    )
    text = response.text
    assert "Hello <strong>Cara</strong>" in text
    assert "<script>alert" not in text
    assert "Asia/Tokyo" in text
    # Deleted for herself, still in the record (issue 11 item 7).
    assert "Bye" in text
    assert "You deleted this message from your own view" in text
    assert_no_inline_code(text)
    at = datetime.fromisoformat(sent[0]["created_at"].replace("Z", "+00:00"))
    assert at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") in text

    download = await scene.cara.client.get(
        f"/api/conversations/{scene.conversation}/transcript", params={"download": "1"}
    )
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "Bye" in download.text


async def test_transcript_refuses_strangers(scene: Scene, client: httpx.AsyncClient) -> None:
    path = f"/api/conversations/{scene.conversation}/transcript"
    error_of(await scene.mallory.client.get(path), 404, "not_found")
    error_of(await client.get(path), 401, "unauthorized")
