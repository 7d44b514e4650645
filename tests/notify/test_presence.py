"""Someone who has the conversation open in a browser is not emailed about it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatserver.chat.presence import Presence, RedisPresence, presence_from_settings
from chatserver.notify.transport import SmtpTransport
from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.e2e.servers import free_port
from tests.notify.conftest import WAIT_SECONDS, MovableClock, SmtpServer, text_of
from tests.waits import eventually_async
from tests.ws_helpers import LiveServer, open_socket

DELAY = 120.0


@pytest.fixture
async def notifier_presence(app: Any, settings: Settings) -> AsyncIterator[Presence]:
    """What a notifier sees: the hub's own presence in the embedded default,
    Redis (as a separate `chatserver notifier` would) in production."""
    if settings.embedded:
        yield app.state.services.hub.presence
        return
    presence = presence_from_settings(settings)
    try:
        yield presence
    finally:
        await presence.stop()


def notifier_with(
    app: Any, settings: Settings, smtp: SmtpServer, clock: MovableClock, presence: Presence
) -> Notifier:
    """The suite's notifier (tests/notify/conftest.py), asking `presence`."""
    chat = app.state.services.chat
    return Notifier(chat, settings, presence, transport=SmtpTransport(smtp.url), clock=clock)


async def becomes(presence: Presence, conversation: str, online: bool) -> None:
    async def now_online() -> bool:
        return await presence.online(conversation, "candidate", "cara") == online

    await eventually_async(now_online, within=WAIT_SECONDS, what=f"online={online}")


async def test_a_candidate_with_the_conversation_open_is_not_emailed(
    server: LiveServer,
    scene: Scene,
    app: Any,
    settings: Settings,
    smtp: SmtpServer,
    clock: MovableClock,
    notifier_presence: Presence,
) -> None:
    notifier = notifier_with(app, settings, smtp, clock, notifier_presence)
    async with open_socket(server, scene.cara) as cara:
        await cara.subscribe(scene.conversation)
        await becomes(notifier_presence, scene.conversation, True)
        await scene.alice.send(scene.conversation, "Are you there?")
        clock.advance(DELAY + 1)
        assert (await notifier.run_once()).planned == 0
    await becomes(notifier_presence, scene.conversation, False)
    # Gone without reading it: now the email is worth sending.
    await notifier.run_once()
    [email] = smtp.bag.messages()
    assert "Are you there?" in text_of(email)


async def test_with_redis_out_of_reach_everyone_counts_as_offline_and_is_emailed(
    scene: Scene,
    app: Any,
    settings: Settings,
    smtp: SmtpServer,
    clock: MovableClock,
    caplog: Any,
) -> None:
    """Presence lives in Redis; while Redis does not answer, nobody is known
    to be online, so the notifier emails rather than emailing nobody at all
    (every planning pass used to fail on the lookup). It asks Redis once,
    not once per email due."""
    dead = RedisPresence(f"redis://127.0.0.1:{free_port()}/0", prefix="test-dead:")
    try:
        notifier = notifier_with(app, settings, smtp, clock, dead)
        # Due to both of the organisation's staff.
        await scene.cara.send(scene.conversation, "Is anyone there?")
        clock.advance(DELAY + 1)
        assert (await notifier.run_once()).planned == 2

        async def both_sent() -> bool:
            return len(smtp.bag.messages()) == 2

        await eventually_async(both_sent, within=WAIT_SECONDS, what="two emails")
    finally:
        await dead.stop()
    assert all("Is anyone there?" in text_of(email) for email in smtp.bag.messages())
    unknown = [r for r in caplog.records if "presence unknown" in r.getMessage()]
    assert len(unknown) == 1
