"""System lines (issue 11 item 4) are nobody's news: a status change, an
end and a reopening email nobody, and an email about the message that
reopened a conversation tells that message only."""

from __future__ import annotations

from chatserver.notify.worker import Notifier
from tests.conftest import Scene
from tests.helpers import Host
from tests.notify.conftest import MovableClock, SmtpServer, text_of

DELAY = 120.0  # the default CHAT_NOTIFY_DELAY_SECONDS


async def test_lines_email_nobody(
    scene: Scene, host: Host, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await host.application("app-1", org="acme", candidate="cara", status="offered")
    ended = await scene.alice.post(f"/api/conversations/{scene.conversation}/end")
    assert ended.status_code == 200, ended.text
    clock.advance(DELAY + 1)
    assert (await notifier.run_once()).planned == 0
    assert smtp.bag.messages() == []

    reopening = await scene.alice.send(scene.conversation, "One more thing: the start date.")
    assert reopening.status_code == 201, reopening.text
    assert reopening.json()["seq"] == 4  # after the status, end and reopen lines
    clock.advance(DELAY + 1)
    result = await notifier.run_once()
    assert (result.planned, result.handled) == (1, 1)
    [email] = smtp.bag.messages()
    assert str(email["To"]) == "Cara <cara@mail.example>"
    text = text_of(email)
    assert "One more thing: the start date." in text
    for line in ("reopened the conversation", "ended the conversation", "status changed"):
        assert line not in text, line
