"""One publish per message, one subscription per organisation (issue 10
item 4): a message reaches its conversation's subscribers, the staff inbox
feeds and both bells from a single publish on its organisation's channel,
and a worker follows an organisation once whatever it follows in it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from chatserver.chat import events
from tests.conftest import Scene
from tests.helpers import Host, sign_in_candidate
from tests.ws_helpers import LiveServer, Socket, Subscriptions, open_socket


class Published:
    """Every payload the app's broker publishes from now on, by channel."""

    def __init__(self, broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.channels: list[str] = []
        publish_many = broker.publish_many

        async def counted(items: Sequence[tuple[str, bytes]]) -> None:
            self.channels.extend(channel for channel, _ in items)
            await publish_many(items)

        monkeypatch.setattr(broker, "publish_many", counted)


@pytest.fixture
def published(app: Any, monkeypatch: pytest.MonkeyPatch) -> Published:
    return Published(app.state.services.broker, monkeypatch)


async def follow_inbox(ws: Socket) -> None:
    await ws.send({"type": "inbox"})
    await ws.send({"type": "ping"})
    await ws.expect("pong")


async def test_a_message_is_one_publish_that_every_feed_hears(
    server: LiveServer, scene: Scene, subscriptions: Subscriptions, published: Published
) -> None:
    async with (
        open_socket(server, scene.alice) as alice,
        open_socket(server, scene.bob) as bob_inbox,
        open_socket(server, scene.cara) as cara,
    ):
        await alice.subscribe(scene.conversation)
        await cara.subscribe(scene.conversation)
        await follow_inbox(bob_inbox)
        await subscriptions.live("org:")

        await scene.alice.send(scene.conversation, "Are you free on Tuesday?")
        assert (await cara.next_of("message"))["message"]["seq"] == 1
        # Alice sent over HTTP: her socket gets the message too.
        assert (await alice.next_of("message"))["message"]["seq"] == 1
        note = (await cara.next_of("notification"))["notification"]
        assert (note["conversation"], note["application"]) == (scene.conversation, "app-1")
        row = await bob_inbox.next_of("inbox")
        assert (row["conversation"], row["unread"]) == (scene.conversation, 0)

        await scene.cara.send(scene.conversation, "Yes, any time.")
        assert (await alice.next_of("message"))["message"]["seq"] == 2
        staff_note = (await bob_inbox.next_of("notification"))["notification"]
        assert "Cara" in staff_note["text"]
        assert (await bob_inbox.next_of("inbox"))["unread"] == 1

    assert published.channels == [events.org_channel("acme")] * 2


async def test_a_worker_follows_an_organisation_once(
    server: LiveServer,
    scene: Scene,
    host: Host,
    subscriptions: Subscriptions,
    new_client: Any,
) -> None:
    second = await host.application("app-2", org="acme", candidate="cy", status="interviewing")
    cy = await sign_in_candidate(host, new_client(), "app-2")
    async with (
        open_socket(server, scene.alice) as alice,
        open_socket(server, scene.cara) as cara,
        open_socket(server, cy) as cy_socket,
    ):
        await alice.subscribe(scene.conversation)
        await alice.subscribe(second["conversation_id"])
        await follow_inbox(alice)
        await cara.subscribe(scene.conversation)
        await cy_socket.subscribe(second["conversation_id"])
        await cy.send(second["conversation_id"], "Hello from Cy")
        assert (await alice.next_of("message"))["message"]["body"] == "Hello from Cy"
        # Nothing of it reaches the other conversation's socket.
        assert [f for f in await cara.quiet() if f["type"] == "message"] == []
    followed = [c for c in subscriptions.channels if c.startswith("org:")]
    assert followed == [events.org_channel("acme")]
