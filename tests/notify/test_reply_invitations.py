"""An email invites a reply only where its reader may send: a candidate
whose application is not progressing or withdrawn, or whose conversation
has ended, is sent "View the conversation" with no reply address and no
"reply to this email"; so is staff about a withdrawn application. The rule
is the send path's own (`chat/policy.py`)."""

from __future__ import annotations

from datetime import time
from email.message import EmailMessage

import pytest

from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.helpers import Host
from tests.notify.conftest import MovableClock, SmtpServer, html_of, text_of
from tests.notify.test_digest import NEW_YORK, choose, next_local

DELAY = 120.0
DOMAIN = "reply.example"
INVITATIONS = ("simply reply to this email", "Reply to this email")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(reply_domain=DOMAIN)


def invites_reply(email: EmailMessage) -> bool:
    """Whether the email offers reply by email: a Reply-To and its words,
    in both parts (they must agree)."""
    parts = [text_of(email), html_of(email)]
    said = [any(words in part for words in INVITATIONS) for part in parts]
    assert said[0] == said[1] == (email["Reply-To"] is not None), (said, email["Reply-To"])
    return said[0]


async def close(scene: Scene, host: Host, how: str) -> None:
    if how == "ended":
        response = await scene.bob.post(f"/api/conversations/{scene.conversation}/end")
        assert response.status_code < 300, response.text
    else:
        await host.application("app-1", org="acme", candidate="cara", status=how)


async def test_a_candidate_who_may_reply_is_invited_to(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await scene.alice.send(scene.conversation, "Could you come in on Tuesday?")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("cara@mail.example")
    assert invites_reply(email)
    assert "Read and reply" in text_of(email)
    assert "Read and reply" in html_of(email)


@pytest.mark.parametrize("how", ["not_progressing", "withdrawn", "ended"])
async def test_a_candidate_who_may_not_send_is_not_invited_to_reply(
    scene: Scene,
    host: Host,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    how: str,
) -> None:
    await scene.alice.send(scene.conversation, "Thank you for your interest.")
    await close(scene, host, how)
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("cara@mail.example")
    assert not invites_reply(email)
    for part in (text_of(email), html_of(email)):
        assert "View the conversation" in part
        assert "Read and reply" not in part


@pytest.mark.parametrize(("how", "invited"), [("withdrawn", False), ("ended", True)])
async def test_staff_are_invited_to_reply_where_their_reply_is_taken(
    scene: Scene,
    host: Host,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    how: str,
    invited: bool,
) -> None:
    """Not about a withdrawn application; about an ended conversation yes:
    their message reopens it, by email as in the app."""
    await scene.cara.send(scene.conversation, "One more question.")
    await close(scene, host, how)
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [email] = smtp.bag.to("alice@acme.example")
    assert invites_reply(email) is invited


@pytest.mark.parametrize(("how", "invited"), [("interviewing", True), ("withdrawn", False)])
async def test_a_digest_of_one_conversation_invites_a_reply_only_where_one_is_taken(
    scene: Scene,
    host: Host,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    how: str,
    invited: bool,
) -> None:
    await choose(scene.alice, email_notifications="daily", timezone="America/New_York")
    await scene.cara.send(scene.conversation, "Is the post still open?")
    await close(scene, host, how)
    clock.set(next_local(time(7, 0, 1), NEW_YORK))
    await notifier.run_once()
    [digest] = smtp.bag.to("alice@acme.example")
    assert invites_reply(digest) is invited
