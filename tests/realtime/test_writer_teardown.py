"""A server-side close ends the socket even when its frames were never written.

A push queues a frame and schedules its writing for the end of the loop's
step (or starts a writer task, for a reader that is behind); a close in
the same loop step (a `disconnect` right behind a bell, or a cut-off of a
client too slow for a burst of frames) comes first. Then nothing of the
writing runs (a writer task cancelled before its first step never enters
its coroutine, so not even its `finally`): the close must not depend on
it. The server has to close the socket with the close's code at once, not
when the client next sends something.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatserver.chat import events
from chatserver.chat.events import DisconnectReason
from chatserver.ops import instruments
from chatserver.realtime.feeds import PersonRoom
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.helpers import context_of
from tests.realtime.notes import heard, message
from tests.ws_helpers import LiveServer, Socket, Subscriptions, open_socket

QUEUE = 16
ACCESS_CHANGED = events.disconnect(DisconnectReason.ACCESS_CHANGED)
# Bounded: the server closes at once, or it does not until the client acts.
CLOSED_WITHIN = 5.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(ws_send_queue=QUEUE)


async def _connected(ws: Socket) -> None:
    """Until the hub has the socket's connection (its reader answers)."""
    await ws.send({"type": "ping"})
    await ws.next_of("pong")


def _person_room(app: Any, scene: Scene) -> PersonRoom:
    room: PersonRoom = app.state.services.hub._people[
        events.person_channel("candidate", scene.cara.id)
    ]
    assert len(room.members) == 1
    return room


async def test_a_disconnect_published_right_behind_a_bell_closes_the_socket(
    server: LiveServer, scene: Scene, app: Any, subscriptions: Subscriptions
) -> None:
    """A staff message (which rings the candidate's bell) and a disconnect
    published back to back: the feed handles them within a few loop steps,
    the bell's push starting the writer and the disconnect maybe
    cancelling it before it ran."""
    chat = app.state.services.chat
    ctx = await context_of(chat, scene.conversation)
    async with open_socket(server, scene.cara) as ws:
        await _connected(ws)
        await subscriptions.live(events.person_channel("candidate", scene.cara.id))
        await subscriptions.live(events.org_channel(ctx.org_id))
        await chat.events.publish([(ctx, message(ctx))])
        await chat.events.to_person("candidate", scene.cara.id, ACCESS_CHANGED)
        assert await ws.closed_code(within=CLOSED_WITHIN) == 1012


async def test_a_disconnect_in_the_step_of_a_push_closes_the_socket(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    """The same, made certain on every broker: the person room handles the
    two payloads one after the other, without the loop running between."""
    ctx = await context_of(app.state.services.chat, scene.conversation)
    async with open_socket(server, scene.cara) as ws:
        await _connected(ws)
        room = _person_room(app, scene)
        [conn] = room.members
        room._ring(*heard(ctx, message(ctx)))
        # The bell is queued, not written yet.
        assert len(conn.outbox) == 1
        room._disconnect(events.encode(events.disconnect(DisconnectReason.SESSION_ENDED)))
        assert await ws.closed_code(within=CLOSED_WITHIN) == 1008


async def test_a_client_cut_off_before_its_writer_ran_is_closed(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    """A burst of more frames than the outbox holds, within one loop step:
    the one that does not fit cuts the client off as too slow before any
    was written."""
    before = instruments.TOTALS.slow_disconnects
    ctx = await context_of(app.state.services.chat, scene.conversation)
    async with open_socket(server, scene.cara) as ws:
        await _connected(ws)
        room = _person_room(app, scene)
        [conn] = room.members
        for _ in range(QUEUE + 1):
            room._ring(*heard(ctx, message(ctx)))
        assert instruments.TOTALS.slow_disconnects == before + 1
        assert conn.close_code == 1013
        assert await ws.closed_code(within=CLOSED_WITHIN) == 1013
