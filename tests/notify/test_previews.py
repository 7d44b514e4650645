"""Previews in notification emails never cut a link: a mail client makes
the cut words a link that goes somewhere else (the demo mailbox's "Links
in this email" listed `https://example.com/aaaa…` as one)."""

from __future__ import annotations

import html
import re
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from linkify_it import LinkifyIt  # type: ignore[import-untyped]

from chatserver.chat.formatting import PREVIEW_LINK_CHARS, preview
from chatserver.notify.compose import PREVIEW_CHARS, Composer
from chatserver.notify.mime import Draft
from chatserver.roles import Role
from chatserver.settings import Settings
from chatserver.store.contexts import ConversationContext
from chatserver.store.emails import Mentioned
from chatserver.web.mailbox import LINK
from tests.conftest import Scene
from tests.notify.conftest import MovableClock, SmtpServer, html_of, text_of

DELAY = 120.0  # the default CHAT_NOTIFY_DELAY_SECONDS
ORIGIN = "https://example.com/"
BASE_URL = "http://testserver"

# Words around the link: nothing a linkifier takes for a link of its own
# (no `.`, `:`, `/` or `@`), but brackets and punctuation that may touch it.
WORDS = st.text(alphabet=string.ascii_letters + string.digits + ",;!?()'\"-", max_size=12)
TEXT = st.lists(WORDS, max_size=60).map(" ".join)
# Text before the link, of any length around the preview's: the link
# starts at the beginning, before the limit, across it or after it.
BEFORE = st.builds(lambda text, n: text[:n], TEXT, st.integers(0, PREVIEW_CHARS + 40))
# A link's path, of any length up to longer than a preview keeps (a pasted
# meeting or tracking link runs to a few hundred characters).
PATHS = st.builds(
    lambda chunk, n: (chunk * n)[:n],
    st.text(alphabet=string.ascii_letters + string.digits + "-~%=&?#/", min_size=1, max_size=30),
    st.integers(1, PREVIEW_LINK_CHARS + 100),
)


def links_in(part: str) -> list[str]:
    """The links the demo mailbox lists for a text, as a mail client finds
    them: in the HTML part, in its words (tags gone, entities decoded)."""
    return list(LINK.findall(html.unescape(re.sub(r"<[^>]+>", " ", part))))


def assert_whole_or_absent(out: str, url: str) -> None:
    """The link is in `out` whole, ended by a space or the end, or not at all
    (the mailbox takes a closing bracket for part of a link: not the preview's doing)."""
    found = [link.rstrip(")") for link in links_in(out) if link.startswith(ORIGIN)]
    assert found in ([], [url]), (found, url)
    if found:
        assert re.search(re.escape(url) + r"\)?(?: |$)", out), out
    else:
        assert "https:" not in out, out


@settings(max_examples=300, deadline=None)
@given(BEFORE, PATHS, TEXT, st.sampled_from(["", "(", "<"]))
def test_a_preview_never_cuts_a_link(before: str, path: str, after: str, bracket: str) -> None:
    url = ORIGIN + path
    closing = {"(": ")", "<": ">"}.get(bracket, "")
    body = " ".join(part for part in (before, f"{bracket}{url}{closing}", after) if part)
    out = preview(body, PREVIEW_CHARS)
    assert_whole_or_absent(out, url)
    # Over the preview's length only by the rest of a link kept whole.
    if url in out:
        assert len(url) <= PREVIEW_LINK_CHARS
        assert len(out) <= PREVIEW_CHARS + len(url) + len(closing) + 1
    else:
        assert len(out) <= PREVIEW_CHARS


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # The finding: a message that is a long link.
        (f"{ORIGIN}{'a' * 300}", f"{ORIGIN}{'a' * 300}"),
        (f"{ORIGIN}{'a' * 300} see you then", f"{ORIGIN}{'a' * 300} …"),
        # The limit falls in a link after some words: kept whole.
        (f"{'word ' * 35}{ORIGIN}{'b' * 50} and more", f"{'word ' * 35}{ORIGIN}{'b' * 50} …"),
        # A link ending just before the limit is not glued to "…" (a
        # linkifier would take `…` for part of it).
        (f"{'word ' * 35}ab {ORIGIN}x{' more' * 10}", f"{'word ' * 35}ab {ORIGIN}x …"),
        # Longer than any preview keeps: left out.
        (f"{ORIGIN}{'c' * PREVIEW_LINK_CHARS} after", "…"),
        (f"Book here: {ORIGIN}{'c' * PREVIEW_LINK_CHARS}", "Book here:…"),
        # An address, a bare domain: links to a mail client too.
        (
            f"{'word ' * 30}{'x' * 40}@example.com said hi",
            f"{'word ' * 30}{'x' * 40}@example.com …",
        ),
        (f"{'word ' * 30}www.example.com/{'d' * 60}", f"{'word ' * 30}www.example.com/{'d' * 60}"),
        # A long word that is no link is still cut where the limit falls.
        ("z" * 300, "z" * 199 + "…"),
    ],
)
def test_preview_examples(body: str, expected: str) -> None:
    assert preview(body, PREVIEW_CHARS) == expected


def composer(tmp_path: Path) -> Composer:
    return Composer(Settings(data_dir=tmp_path, base_url=BASE_URL))


def context() -> ConversationContext:
    at = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    return ConversationContext(
        id="conv-1",
        application_id="app-1",
        org_id="org-1",
        candidate_id="cara",
        state="open",
        status="interviewing",
        has_staff_message=True,
        job_title="Teacher of Mathematics",
        last_seq=1,
        last_message_at=at,
        created_at=at,
        applied_at=at,
        job_id="job-1",
        candidate_name="Cara",
        candidate_email="cara@mail.example",
        org_name="Acme",
    )


def recipient(kind: str) -> dict[str, Any]:
    return {
        "id": "cara" if kind == Role.CANDIDATE else "alice",
        "name": "Cara" if kind == Role.CANDIDATE else "Alice",
        "email": "someone@mail.example",
        "timezone": "Europe/London",
        "session_generation": 0,
        "org_name": "Acme",
    }


def emails_about(composer: Composer, body: str) -> list[Draft]:
    """Each kind of email that previews a message with this body."""
    message = {
        "seq": 1,
        "body": body,
        "sender_name": "Alice",
        "created_at": datetime(2026, 11, 3, 9, 30, tzinfo=UTC),
    }
    found = Mentioned(count=1, latest=[message], sender_names=["Alice"])  # type: ignore[list-item]
    item = {
        "id": "conv-1",
        "application_id": "app-1",
        "candidate_name": "Cara",
        "job_title": "Teacher of Mathematics",
        "org_name": "Acme",
        "unread": 1,
        "last_body": body,
    }
    return [
        *(composer.messages_email(kind, recipient(kind), context(), found) for kind in Role),
        *(
            composer.digest_email(kind, recipient(kind), [item], "2026-11-03", False)
            for kind in Role
        ),
    ]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(BEFORE, PATHS, TEXT)
def test_every_email_part_has_the_link_whole_or_not_at_all(
    tmp_path: Path, before: str, path: str, after: str
) -> None:
    url = ORIGIN + path
    body = " ".join(part for part in (before, url, after) if part)
    for draft in emails_about(composer(tmp_path), body):
        for part in (draft.text, draft.html):
            # The email's own links (the conversation, settings) are whole.
            words = " ".join(link for link in links_in(part) if not link.startswith(BASE_URL))
            assert_whole_or_absent(words, url)


async def test_an_emailed_long_link_arrives_whole(
    scene: Scene, notifier: Any, smtp: SmtpServer, clock: MovableClock
) -> None:
    url = f"{ORIGIN}interviews/book?slot={'a' * 300}"
    sent = await scene.alice.send(scene.conversation, url)
    assert sent.status_code == 201, sent.text
    clock.advance(DELAY + 1)
    assert (await notifier.run_once()).handled == 1
    [email] = smtp.bag.messages()
    for part in (text_of(email), html_of(email)):
        assert [link for link in links_in(part) if link.startswith(ORIGIN)] == [url]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Words the composer's link button (or a URL pasted over them) made
        # a link: the email shows where it goes.
        (
            f"Please [book a slot]({ORIGIN}book) for Tuesday.",
            f"Please book a slot ({ORIGIN}book) for Tuesday.",
        ),
        (f"[**Bold** words]({ORIGIN}b)", f"Bold words ({ORIGIN}b)"),
        ("Write to [me](mailto:alice@acme.example).", "Write to me (alice@acme.example)."),
        # Words that look like another address: the real one follows them.
        (f"[https://acme.example/jobs]({ORIGIN}x)", f"https://acme.example/jobs ({ORIGIN}x)"),
        # A link that shows its address is not repeated.
        (f"See {ORIGIN}a or <{ORIGIN}b>.", f"See {ORIGIN}a or {ORIGIN}b."),
        ("[example.com/jobs](https://example.com/jobs)", "example.com/jobs"),
    ],
)
def test_an_email_preview_shows_where_a_link_of_words_goes(body: str, expected: str) -> None:
    assert preview(body, PREVIEW_CHARS, for_email=True) == expected


async def test_an_emailed_link_of_words_arrives_with_its_address(
    scene: Scene, notifier: Any, smtp: SmtpServer, clock: MovableClock
) -> None:
    url = f"{ORIGIN}interviews/book?candidate=cara"
    sent = await scene.alice.send(scene.conversation, f"Please [book your interview]({url}).")
    assert sent.status_code == 201, sent.text
    clock.advance(DELAY + 1)
    assert (await notifier.run_once()).handled == 1
    [email] = smtp.bag.messages()
    assert f"book your interview ({url})." in text_of(email)
    for part in (text_of(email), html_of(email)):
        # As a mail client links it (linkify-it): the brackets are not part of it.
        words = html.unescape(re.sub(r"<[^>]+>", " ", part))
        found = [match.url for match in LinkifyIt().match(words) or []]
        assert [link for link in found if link.startswith(ORIGIN)] == [url]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "Please bring:\n- passport\n- two references\n\nThanks!",
            "Please bring: \N{BULLET} passport \N{BULLET} two references Thanks!",
        ),
        ("1. Call us\n2. Visit the school", "1. Call us 2. Visit the school"),
        ("3) third\n4) fourth", "3) third 4) fourth"),
        ("* star\n  - nested", "\N{BULLET} star \N{BULLET} nested"),
    ],
)
def test_an_email_preview_keeps_the_marks_of_a_lists_items(body: str, expected: str) -> None:
    assert preview(body, PREVIEW_CHARS, for_email=True) == expected
