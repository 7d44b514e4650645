"""Feeds without a task (issue 10 items 4 and 5): a person room is a broker
listener and a tap of its applications' organisation streams, so an idle
one runs nothing; it rings the candidate's bell from the staff messages
of their own applications only, ends sockets on `disconnect`, kicks a
member too slow for a frame without waiting for it, and survives a
payload it cannot handle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatserver.broker import MemoryBroker
from chatserver.chat import events, wire
from chatserver.chat.events import DisconnectReason
from chatserver.chat.identity import Viewer
from chatserver.chat.ratelimit import TokenBucket
from chatserver.json_types import JSON
from chatserver.realtime.connection import Connection
from chatserver.realtime.feeds import PersonRoom
from chatserver.realtime.streams import OrgStreams
from chatserver.roles import Role
from chatserver.store.contexts import SendContext
from tests.realtime.notes import candidate_note, conversation, message
from tests.waits import eventually_async

pytestmark = pytest.mark.parametrize("backend", ["embedded"])

CHANNEL = events.person_channel("candidate", "cand-1")
APP = conversation()
# A feed handles a payload within a few loop steps of the broker handing
# it over (the organisation stream's task, then one step).
HANDLED_WITHIN = 2.0


def connection(queue_size: int = 8, applications: tuple[str, ...] = ("app-1",)) -> Connection:
    viewer = Viewer(
        kind=Role.CANDIDATE,
        id="cand-1",
        name="Cara",
        timezone="UTC",
        application_ids=applications,
        application_orgs=("org-1",) * len(applications),
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


class Feeds:
    """A broker, its organisation streams and person rooms made on them."""

    def __init__(self) -> None:
        self.broker = MemoryBroker()
        self.streams = OrgStreams(self.broker)

    def room(self, kick: Any = None, channel: str = CHANNEL) -> PersonRoom:
        return PersonRoom(channel, self.broker, self.streams, kick or Kicks())

    async def live(self, org_id: str = "org-1") -> None:
        """Until the organisation's stream is subscribed (a tap does not wait)."""
        await asyncio.wait_for(self.streams._streams[org_id].live.wait(), HANDLED_WITHIN)

    async def publish(self, ctx: SendContext, event: JSON, again: bool = False) -> None:
        await self.broker.publish(*events.envelope_of(ctx, event, again))

    async def to_person(self, event: JSON) -> None:
        await self.broker.publish(CHANNEL, events.encode(event))
        await one_step()


async def one_step() -> None:
    """Let the loop run what the publish scheduled with call_soon."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await asyncio.wait_for(done, HANDLED_WITHIN)


async def rung(conn: Connection, what: str = "the bell") -> list[str]:
    return await eventually_async(lambda: frames(conn) or None, within=HANDLED_WITHIN, what=what)


@pytest.fixture
async def feeds() -> AsyncIterator[Feeds]:
    made = Feeds()
    yield made
    await made.streams.stop(HANDLED_WITHIN)


def bell_of(event: JSON, ctx: SendContext = APP) -> str:
    return wire.encode(candidate_note(ctx, event))


async def test_idle_person_rooms_run_no_task_and_ring_the_bell(app: Any, feeds: Feeds) -> None:
    tasks_before = len(asyncio.all_tasks())
    rooms = [feeds.room(channel=events.person_channel("candidate", f"p{i}")) for i in range(200)]
    for room in rooms:
        room.join(connection())
    # One task for the organisation's stream, none per room.
    assert len(asyncio.all_tasks()) == tasks_before + 1
    room = feeds.room()
    first, second = connection(), connection()
    room.join(first)
    room.join(second)
    await feeds.live()

    staff_says = message(APP)
    await feeds.publish(APP, staff_says)
    assert await rung(first) == [bell_of(staff_says)]
    assert frames(second) == [bell_of(staff_says)]

    for each in [*rooms, room]:
        each.stop()
    await feeds.streams.stop(HANDLED_WITHIN)
    assert feeds.broker._channels == {}
    await feeds.publish(APP, message(APP, seq=2))
    await one_step()
    assert frames(first) == []


async def test_the_bell_rings_for_staff_messages_of_the_sockets_own_applications(
    app: Any, feeds: Feeds
) -> None:
    room = feeds.room()
    only_one, both = connection(), connection(applications=("app-1", "app-2"))
    room.join(only_one)
    room.join(both)
    await feeds.live()
    other = conversation(application_id="app-2")
    elsewhere = conversation(application_id="app-3")
    await feeds.publish(APP, message(APP, kind=Role.CANDIDATE, seq=1))
    await feeds.publish(APP, events.read_event(APP.id, {"kind": "staff", "id": "a"}, 1))
    await feeds.publish(APP, events.typing_event(APP.id, {"kind": "staff", "id": "a"}))
    await feeds.publish(elsewhere, message(elsewhere))
    # A retried send's message, published again: it rang the first time.
    await feeds.publish(other, message(other, seq=1), again=True)
    await feeds.publish(other, message(other, seq=2))
    assert await rung(both) == [bell_of(message(other, seq=2), other)]
    assert frames(only_one) == []
    # The last socket of an application gone, its tap goes too.
    room.leave(both)
    assert set(feeds.streams._streams["org-1"].taps) == {"app-1"}
    room.stop()


async def test_a_member_too_slow_for_the_bell_is_kicked_without_waiting(
    app: Any, feeds: Feeds
) -> None:
    kicks = Kicks()
    room = feeds.room(kicks)
    slow, fast = connection(queue_size=2), connection()
    for _ in range(2):
        assert slow.push("unread")
    room.join(slow)
    room.join(fast)
    await feeds.live()
    await feeds.publish(APP, message(APP))
    await asyncio.wait_for(kicks.changed.wait(), HANDLED_WITHIN)
    assert kicks.kicked == [slow]
    assert frames(fast) == [bell_of(message(APP))]
    room.stop()


async def test_disconnect_ends_every_socket_of_the_person(app: Any, feeds: Feeds) -> None:
    room = feeds.room()
    members = [connection(), connection()]
    for member in members:
        room.join(member)
    await feeds.to_person(events.disconnect(DisconnectReason.SESSION_ENDED))
    assert [conn.close_code for conn in members] == [1008, 1008]
    room.stop()


async def test_a_payload_the_feed_cannot_handle_is_logged_and_the_next_one_goes_through(
    app: Any, feeds: Feeds, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_kick(conn: Connection) -> None:
        raise RuntimeError("the hub failed")

    room = feeds.room(broken_kick)
    slow = connection(queue_size=2)
    for _ in range(2):
        assert slow.push("unread")
    room.join(slow)
    await feeds.live()
    with caplog.at_level(logging.ERROR, logger="chatserver.realtime.feeds"):
        await feeds.publish(APP, message(APP))
        await eventually_async(
            lambda: any(f"feed {CHANNEL} failed" in r.getMessage() for r in caplog.records),
            within=HANDLED_WITHIN,
            what="the failure logged",
        )
    room.leave(slow)
    fine = connection()
    room.join(fine)
    await feeds.live()
    await feeds.publish(APP, message(APP, seq=2))
    assert await rung(fine) == [bell_of(message(APP, seq=2))]
    room.stop()


async def test_a_payload_that_is_not_an_event_is_dropped_and_the_next_one_goes_through(
    app: Any, feeds: Feeds
) -> None:
    room = feeds.room()
    member = connection()
    room.join(member)
    await feeds.live()
    for junk in (b"", b"not json", b'["c1"]\n{}', b'["c1","app-1","J","nonsense",null]\n{}'):
        await feeds.broker.publish(events.org_channel("org-1"), junk)
    await feeds.to_person({"type": "noise"})
    await feeds.publish(APP, message(APP))
    assert await rung(member) == [bell_of(message(APP))]
    room.stop()
