"""The daily digest: at CHAT_DIGEST_HOUR in each reader's own timezone, once a day."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chatserver.clock import utcnow
from chatserver.notify.compose import DIGEST_ITEMS, Composer
from chatserver.notify.worker import Notifier
from chatserver.roles import Role
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.helpers import Host, Person, sign_in_candidate
from tests.notify.conftest import MovableClock, SmtpServer, html_of, subject, text_of
from tests.notify.test_previews import recipient

NEW_YORK = ZoneInfo("America/New_York")


def next_local(at: time, tz: ZoneInfo) -> datetime:
    """The next moment after now when the clock in `tz` shows `at`."""
    now = utcnow().astimezone(tz)
    candidate = datetime.combine(now.date(), at, tzinfo=tz)
    if candidate <= now:
        candidate = datetime.combine(now.date() + timedelta(days=1), at, tzinfo=tz)
    return candidate


async def choose(person: Person, **settings: Any) -> None:
    response = await person.client.put("/api/me/settings", json=settings, headers=person.csrf)
    assert response.status_code == 200, response.text


async def test_a_daily_reader_gets_one_digest_at_the_local_digest_hour(
    scene: Scene,
    host: Host,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    new_client: Any,
) -> None:
    await choose(scene.alice, email_notifications="daily", timezone="America/New_York")
    other = await host.application(
        "app-2", candidate="erin", status="interviewing", job="acme-job-2", job_title="Librarian"
    )
    erin = await sign_in_candidate(host, new_client(), "app-2")
    await scene.cara.send(scene.conversation, "Thank you, **Monday** suits me.")
    await scene.cara.send(scene.conversation, "Shall I bring my certificates?")
    await erin.send(other["conversation_id"], "Is the post part-time?")

    clock.set(next_local(time(6, 59, 30), NEW_YORK))
    await notifier.run_once()
    assert smtp.bag.to("alice@acme.example") == []  # "daily": no email per reply
    assert len(smtp.bag.to("bob@acme.example")) == 2  # "each": one per conversation

    clock.advance(31)  # 07:00:01 in New York
    await notifier.run_once()
    [digest] = smtp.bag.to("alice@acme.example")
    assert subject(digest) == "Daily summary: 2 conversations unread"
    text = text_of(digest)
    day = clock().astimezone(NEW_YORK)
    assert f"Your summary for {day:%A} {day.day} {day:%B %Y}: 2 conversations" in text
    assert "Cara · Teacher of Mathematics · 2 unread" in text
    assert "Shall I bring my certificates?" in text
    assert "Erin · Librarian · 1 unread" in text
    assert f"http://testserver/c/{scene.conversation}" in text
    assert f"http://testserver/c/{other['conversation_id']}" in html_of(digest)

    clock.advance(3 * 3600)  # later the same day: nothing more
    await notifier.run_once()
    assert len(smtp.bag.to("alice@acme.example")) == 1

    clock.advance(21 * 3600)  # 07:00:01 the next morning, if still unread
    await notifier.run_once()
    assert len(smtp.bag.to("alice@acme.example")) == 2


async def test_a_day_with_nothing_unread_sends_no_digest(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await choose(scene.alice, email_notifications="daily", timezone="America/New_York")
    sent = await scene.cara.send(scene.conversation, "Hello")
    read = await scene.alice.post(
        f"/api/conversations/{scene.conversation}/read", {"seq": sent.json()["seq"]}
    )
    assert read.status_code == 204, read.text
    clock.set(next_local(time(7, 0, 1), NEW_YORK))
    await notifier.run_once()
    assert smtp.bag.to("alice@acme.example") == []


async def test_a_candidates_digest_names_the_organisation_of_each_post(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    # Cara applied to the same post at two schools: each entry says which.
    other = await host.application(
        "app-3", org="globex", candidate="cara", status="interviewing", job="globex-job-1"
    )
    await choose(scene.cara, email_notifications="daily", timezone="America/New_York")
    await scene.alice.send(scene.conversation, "Could you come in on Monday?")
    await scene.mallory.send(other["conversation_id"], "Are you free on Tuesday?")

    clock.set(next_local(time(7, 0, 1), NEW_YORK))
    await notifier.run_once()
    [digest] = smtp.bag.to("cara@mail.example")
    text, html = text_of(digest), html_of(digest)
    assert "Teacher of Mathematics · Acme · 1 unread" in text
    assert "Teacher of Mathematics · Globex · 1 unread" in text
    assert "Teacher of Mathematics · Teacher of Mathematics" not in text
    assert "</a> · Acme</div>" in html
    assert "</a> · Globex</div>" in html


@pytest.mark.parametrize("kind", list(Role))
def test_a_digest_of_more_than_it_lists_says_so_in_its_body(kind: Role, tmp_path: Path) -> None:
    """Over DIGEST_ITEMS conversations, the body agrees with the subject's
    "50+": more than 50, the 50 most recent shown."""
    items = [
        {
            "id": f"conv-{n}",
            "application_id": f"app-{n}",
            "candidate_name": f"Candidate {n}",
            "job_title": "Teacher of Mathematics",
            "org_name": "Acme",
            "unread": 1,
            "last_body": "Hello",
        }
        for n in range(DIGEST_ITEMS)
    ]
    composer = Composer(Settings(data_dir=tmp_path, base_url="http://testserver"))
    draft = composer.digest_email(kind, recipient(kind), items, "2026-11-03", True)
    assert draft.subject == f"Daily summary: {DIGEST_ITEMS}+ conversations unread"
    for body in (draft.text, draft.html):
        assert f"more than {DIGEST_ITEMS} conversations with unread messages" in body
        assert f"The {DIGEST_ITEMS} most recent are below." in body
        assert f": {DIGEST_ITEMS} conversations" not in body
        assert "There are more" not in body
    assert ("http://testserver/inbox" in draft.text) == (kind == Role.STAFF)
    fewer = composer.digest_email(kind, recipient(kind), items[:2], "2026-11-03", False)
    assert ": 2 conversations with unread messages." in fewer.text
    assert "more than" not in fewer.text
