"""A room always stops, and releases its broker subscription, however its
cancellation lands (issue 16 item 4)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
import pytest

from chatserver.broker import Event, MemoryBroker, Subscription
from chatserver.chat import events
from chatserver.realtime.catchup import CatchUp
from chatserver.realtime.connection import Connection
from chatserver.realtime.conversation_room import ConversationRoom
from chatserver.realtime.streams import OrgStreams
from tests.conftest import Scene
from tests.helpers import context_of

STOP_WITHIN = 2.0


def _kick(conn: Connection) -> None:
    raise AssertionError("nobody is slow here")


@pytest.mark.parametrize("backend", ["embedded"])
async def test_a_room_stopped_as_an_event_arrives_still_stops(scene: Scene, app: Any) -> None:
    """Python 3.11's wait_for returns the awaited result instead of raising
    when a cancel arrives in the same loop iteration as the result: a room
    waiting with a deadline (messages held ahead of a gap) then went on
    waiting for ever, its subscription open, and shutdown hung on it."""
    chat = app.state.services.chat
    broker = MemoryBroker()
    streams = OrgStreams(broker)
    room = ConversationRoom(scene.conversation, chat, streams, _kick, 16, CatchUp(chat.db))
    room.start()
    assert room.ready is not None
    await asyncio.wait_for(room.ready.wait(), STOP_WITHIN)
    ctx = await context_of(chat, scene.conversation)
    # A message ahead of a gap: the room now waits with a deadline.
    sender = {"kind": "system", "id": "system", "name": "System"}
    ahead = events.message_event({"seq": 5, "created_at": None, "sender": sender})
    await broker.publish(*events.envelope_of(ctx, ahead))
    for _ in range(3):
        await asyncio.sleep(0)
    noise = orjson.dumps({"type": "noise"})
    # The event and the cancel land together, without a yield in between.
    await broker.publish(events.org_channel(ctx.org_id), noise)
    task = room.stop()
    assert task is not None
    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN)
    assert done == {task}
    assert task.cancelled()
    # The organisation's stream, which the room was the last to follow, too.
    await streams.stop(STOP_WITHIN)
    assert broker._channels == {}


class _Swallowing:
    """A subscription whose `get` swallows cancellation, as a misbehaving
    library might."""

    def __init__(self, inner: Subscription) -> None:
        self._inner = inner
        self.channel = inner.channel

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._inner.__aiter__()

    async def get(self) -> Event:
        while True:
            try:
                return await self._inner.get()
            except asyncio.CancelledError:
                continue

    def qsize(self) -> int:
        return self._inner.qsize()

    def offer(self, event: Event) -> bool:
        return self._inner.offer(event)

    def close(self) -> None:
        self._inner.close()


class _SwallowingBroker(MemoryBroker):
    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        return self._swallowing(channel)

    @asynccontextmanager
    async def _swallowing(self, channel: str) -> AsyncIterator[Subscription]:
        async with super().subscribe(channel) as inner:
            yield _Swallowing(inner)


@pytest.mark.parametrize("backend", ["embedded"])
async def test_a_room_that_swallowed_its_cancel_ends_when_stopped(scene: Scene, app: Any) -> None:
    """Whatever library swallows a cancel, `stop` also closes the room's
    subscription and its organisation stream's, so both end and the broker
    releases the channel."""
    chat = app.state.services.chat
    broker = _SwallowingBroker()
    streams = OrgStreams(broker)
    room = ConversationRoom(scene.conversation, chat, streams, _kick, 16, CatchUp(chat.db))
    room.start()
    assert room.ready is not None
    await asyncio.wait_for(room.ready.wait(), STOP_WITHIN)
    for _ in range(3):
        await asyncio.sleep(0)
    task = room.stop()
    assert task is not None
    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN)
    assert done == {task}
    # The stream's subscription swallows cancels too: only its close ends it.
    await streams.stop(STOP_WITHIN)
    assert not streams._stopping
    assert broker._channels == {}
