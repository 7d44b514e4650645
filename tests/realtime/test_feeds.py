"""Feeds without a task (issue 10 item 5): a person room is a broker
listener, so an idle one runs nothing; it still relays the bell, ends
sockets on `disconnect`, kicks a member too slow for a frame without
waiting for it, and survives a payload it cannot handle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from chatserver.broker import MemoryBroker
from chatserver.chat import events
from chatserver.chat.events import DisconnectReason
from chatserver.chat.identity import Viewer
from chatserver.chat.ratelimit import TokenBucket
from chatserver.realtime.connection import Connection
from chatserver.realtime.feeds import PersonRoom
from chatserver.roles import Role
from tests.realtime.notes import candidate_note

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

CHANNEL = events.person_channel("candidate", "cand-1")
NOTE = events.encode(candidate_note())
# A feed handles a payload one loop step after the broker hands it over.
HANDLED_WITHIN = 2.0


def connection(queue_size: int = 8) -> Connection:
    viewer = Viewer(
        kind=Role.CANDIDATE, id="cand-1", name="Cara", timezone="UTC", application_ids=("app-1",)
    )
    return Connection(viewer, queue_size, TokenBucket(1.0, 1, 0.0), ticket="t")


def frames(conn: Connection) -> list[str]:
    taken: list[str] = []
    while (frame := conn.outbox.take()) is not None:
        taken.append(frame)
    return taken


class Kicks:
    def __init__(self) -> None:
        self.kicked: list[Connection] = []
        self.changed = asyncio.Event()

    def __call__(self, conn: Connection) -> None:
        self.kicked.append(conn)
        self.changed.set()


async def handled(broker: MemoryBroker, payload: bytes) -> None:
    """Publish, then let the loop run the feed's handling (scheduled with
    call_soon by the publish: one step, bounded here)."""
    await broker.publish(CHANNEL, payload)
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await asyncio.wait_for(done, HANDLED_WITHIN)


async def test_idle_person_rooms_run_no_task_and_relay_the_bell(app: Any) -> None:
    chat = app.state.services.chat
    broker = MemoryBroker()
    tasks_before = len(asyncio.all_tasks())
    rooms = [
        PersonRoom(events.person_channel("candidate", f"p{i}"), chat, broker, Kicks())
        for i in range(200)
    ]
    for room in rooms:
        room.start()
        room.members.add(connection())
    assert len(asyncio.all_tasks()) == tasks_before
    room = PersonRoom(CHANNEL, chat, broker, Kicks())
    room.start()
    first, second = connection(), connection()
    room.members.update({first, second})

    await handled(broker, events.encode({"type": "noise"}))
    await handled(broker, NOTE)
    assert frames(first) == frames(second) == [NOTE.decode()]

    for each in [*rooms, room]:
        assert each.stop() is None
    assert broker._channels == {}
    await handled(broker, NOTE)
    assert frames(first) == []


async def test_a_member_too_slow_for_the_bell_is_kicked_without_waiting(app: Any) -> None:
    kicks = Kicks()
    room = PersonRoom(CHANNEL, app.state.services.chat, MemoryBroker(), kicks)
    broker = room._broker
    assert isinstance(broker, MemoryBroker)
    room.start()
    slow, fast = connection(queue_size=2), connection()
    for _ in range(2):
        assert slow.push("unread")
    room.members.update({slow, fast})
    await handled(broker, NOTE)
    await asyncio.wait_for(kicks.changed.wait(), HANDLED_WITHIN)
    assert kicks.kicked == [slow]
    assert frames(fast) == [NOTE.decode()]
    room.stop()


async def test_disconnect_ends_every_socket_of_the_person(app: Any) -> None:
    broker = MemoryBroker()
    room = PersonRoom(CHANNEL, app.state.services.chat, broker, Kicks())
    room.start()
    members = [connection(), connection()]
    room.members.update(members)
    await handled(broker, events.encode(events.disconnect(DisconnectReason.SESSION_ENDED)))
    assert [conn.close_code for conn in members] == [1008, 1008]
    room.stop()


async def test_a_payload_the_feed_cannot_handle_is_logged_and_the_next_one_goes_through(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_kick(conn: Connection) -> None:
        raise RuntimeError("the hub failed")

    broker = MemoryBroker()
    room = PersonRoom(CHANNEL, app.state.services.chat, broker, broken_kick)
    room.start()
    slow = connection(queue_size=2)
    for _ in range(2):
        assert slow.push("unread")
    room.members.add(slow)
    with caplog.at_level(logging.ERROR, logger="chatserver.realtime.feeds"):
        await handled(broker, NOTE)
    assert any(f"feed {CHANNEL} failed" in r.getMessage() for r in caplog.records)
    room.members.discard(slow)
    fine = connection()
    room.members.add(fine)
    await handled(broker, NOTE)
    assert frames(fine) == [NOTE.decode()]
    room.stop()
