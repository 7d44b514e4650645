"""SPEC 3.2 inside one worker: whatever the broker does (reorders, loses,
overflows), each socket sees every message once and in seq order, because
rooms fill gaps and catch up from the database."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from chatserver.broker import MemoryBroker
from chatserver.chat import events, views
from chatserver.chat.events import message_event
from chatserver.chat.service import Chat
from chatserver.ops import instruments
from chatserver.store import messages
from chatserver.store.tables import conversations
from tests.conftest import Scene
from tests.helpers import context_of, publish_about
from tests.waits import eventually_async
from tests.ws_helpers import LiveServer, open_socket, seqs

# Deadline for presence to show up in (or vanish from) Redis: its writer
# batches changes every 0.2 s.
PRESENCE_WITHIN = 3.0


def services(app: Any) -> Any:
    return app.state.services


async def store_silently(chat: Chat, conversation_id: str, count: int) -> list[dict[str, Any]]:
    """Commit `count` messages without publishing anything: what a worker
    that crashed between commit and publish, or a Redis outage, leaves."""
    now = datetime.now(UTC)
    async with chat.db.transaction() as db:
        row = (
            (await db.execute(conversations.select().where(conversations.c.id == conversation_id)))
            .mappings()
            .one()
        )
        first = int(row["last_seq"]) + 1
        rows = [
            {
                "id": secrets.token_hex(16),
                "conversation_id": conversation_id,
                "seq": seq,
                "sender_kind": "staff",
                "sender_id": "alice",
                "sender_name": "Alice Recruiter",
                "client_id": str(uuid.uuid4()),
                "body": f"silent {seq}",
                "html": f"<p>silent {seq}</p>",
                "created_at": now,
                "deleted": False,
            }
            for seq in range(first, first + count)
        ]
        await messages.insert_many(db, rows)
        await db.execute(
            update(conversations)
            .where(conversations.c.id == conversation_id)
            .values(last_seq=first + count - 1, last_message_at=now, has_staff_message=True)
        )
    return rows


async def test_out_of_order_publishes_are_delivered_in_seq_order(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    svc = services(app)
    async with open_socket(server, scene.cara) as ws:
        await ws.subscribe(scene.conversation)
        rows = await store_silently(svc.chat, scene.conversation, 3)
        frames = {r["seq"]: events.encode(events.message_event(views.message(r))) for r in rows}
        ctx = await context_of(svc.chat, scene.conversation)
        for seq in (1, 3, 2):
            await svc.broker.publish(*events.envelope_of(ctx, orjson.loads(frames[seq])))
        delivered = await ws.collect(lambda fs: len(seqs(fs)) == 3)
        assert seqs(delivered) == [1, 2, 3]
        bodies = [f["message"]["body"] for f in delivered if f["type"] == "message"]
        assert bodies == ["silent 1", "silent 2", "silent 3"]
        assert seqs(await ws.quiet()) == []


async def test_a_gap_that_never_fills_is_read_from_the_database(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    svc = services(app)
    async with open_socket(server, scene.cara) as ws:
        await ws.subscribe(scene.conversation)
        rows = await store_silently(svc.chat, scene.conversation, 4)
        for row in (rows[0], rows[3]):
            await publish_about(svc.chat, scene.conversation, message_event(views.message(row)))
        delivered = await ws.collect(lambda fs: len(seqs(fs)) == 4)
        assert seqs(delivered) == [1, 2, 3, 4]
        bodies = [f["message"]["body"] for f in delivered if f["type"] == "message"]
        assert bodies[1:3] == ["silent 2", "silent 3"]


MARKER = {"kind": "staff", "id": "marker", "name": "Marker"}


# Only the in-process broker lets the test overflow a queue at will; the
# Redis path to a Resync (an outage) is tested in tests/broker and tests/e2e.
@pytest.mark.parametrize("backend", ["embedded"])
async def test_a_resync_catches_up_from_the_database(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    svc = services(app)
    assert isinstance(svc.broker, MemoryBroker)
    async with open_socket(server, scene.cara) as ws:
        await ws.subscribe(scene.conversation)
        await scene.alice.send(scene.conversation, "Welcome")
        await ws.collect(lambda fs: 1 in seqs(fs))
        resyncs = instruments.TOTALS.resyncs
        await store_silently(svc.chat, scene.conversation, 4)
        ctx = await context_of(svc.chat, scene.conversation)
        # More than a room's queue holds, without yielding: the backlog is
        # replaced with one Resync.
        someone = {"kind": "staff", "id": "someone", "name": "Someone"}
        noise = events.envelope_of(ctx, events.typing_event(scene.conversation, someone))

        async def overflow() -> None:
            for _ in range(svc.broker.queue_size + 10):
                await svc.broker.publish(*noise)

        await overflow()
        delivered = await ws.collect(lambda fs: len(seqs(fs)) == 4)
        assert seqs(delivered) == [2, 3, 4, 5]
        assert instruments.TOTALS.resyncs > resyncs
        # Nothing about the state, which did not change (a resync repeats
        # every few seconds while Redis is down); a typing frame published
        # after the overflow comes after the resync's frames.
        marker = events.envelope_of(ctx, events.typing_event(scene.conversation, MARKER))

        async def told_until_the_marker() -> list[dict[str, Any]]:
            await svc.broker.publish(*marker)
            frames = await ws.collect(lambda fs: bool(fs) and fs[-1].get("who") == MARKER)
            return [f for f in frames if f["type"] == "conversation"]

        assert await told_until_the_marker() == []

        # Ended while its event was lost: the next resync says so, once.
        async with svc.chat.db.transaction() as conn:
            ended = update(conversations).where(conversations.c.id == scene.conversation)
            await conn.execute(ended.values(state="ended"))
        await overflow()
        [changed] = await told_until_the_marker()
        assert (changed["state"], changed["can_send"]) == ("ended", False)
        await overflow()
        assert await told_until_the_marker() == []

        # Reopened while its event was lost, and a socket joins meanwhile:
        # it is told "open" by its subscribe while the others still know
        # "ended"; when it ends again, unheard, the next resync tells them
        # all, the newcomer included, although the room last said "ended".
        async def set_state(state: str) -> None:
            async with svc.chat.db.transaction() as conn:
                await conn.execute(
                    update(conversations)
                    .where(conversations.c.id == scene.conversation)
                    .values(state=state)
                )

        await set_state("open")
        async with open_socket(server, scene.cara) as late:
            assert (await late.subscribe(scene.conversation))["state"] == "open"
            await set_state("ended")
            await overflow()
            await svc.broker.publish(*marker)
            frames = await late.collect(lambda fs: bool(fs) and fs[-1].get("who") == MARKER)
            assert [f["state"] for f in frames if f["type"] == "conversation"] == ["ended"]


async def test_a_long_backlog_is_replayed_in_pages_in_order(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    await store_silently(services(app).chat, scene.conversation, 450)
    async with open_socket(server, scene.cara) as ws:
        assert (await ws.subscribe(scene.conversation, after=10))["last_seq"] == 450
        delivered = await ws.collect(lambda fs: len(seqs(fs)) == 440, within=20)
        assert seqs(delivered) == list(range(11, 451))


async def test_presence_follows_subscriptions(server: LiveServer, scene: Scene, app: Any) -> None:
    presence = services(app).hub.presence

    async def until(expected: bool) -> None:
        async def became() -> bool:
            online = await presence.online(scene.conversation, "candidate", scene.cara.id)
            return bool(online == expected)

        await eventually_async(became, within=PRESENCE_WITHIN, what=f"presence {expected}")

    assert not await presence.online(scene.conversation, "candidate", scene.cara.id)
    async with open_socket(server, scene.cara) as first, open_socket(server, scene.cara) as second:
        await first.subscribe(scene.conversation)
        await second.subscribe(scene.conversation)
        await until(True)
        assert not await presence.online(scene.conversation, "staff", "alice")
        await first.send({"type": "unsubscribe", "conversation": scene.conversation})
        await first.send({"type": "ping"})
        await first.expect("pong")
        # Time for a wrong "offline" to be written: nothing signals that it was not.
        await asyncio.sleep(0.3)
        assert await presence.online(scene.conversation, "candidate", scene.cara.id)
    await until(False)


async def test_rooms_close_when_their_last_socket_leaves(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    hub = services(app).hub
    async with open_socket(server, scene.alice) as ws, open_socket(server, scene.cara) as other:
        await ws.subscribe(scene.conversation)
        await other.subscribe(scene.conversation)
        await ws.send({"type": "inbox"})
        assert hub.room_count == 1
    await eventually_async(
        lambda: not (hub.room_count or hub.local_connections().get("staff")),
        within=2,
        what="the rooms and connections closing",
    )
    assert hub.local_connections() == {}


async def test_a_late_gap_fill_never_repeats_what_a_subscriber_already_has(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    """A worker died between commit and publish: the room here is behind the
    database. A client that resubscribes meanwhile gets those messages from
    history; when the room later fills its gap, that client must not see
    them again (the e2e kill test's "got seq 63, expected 70")."""
    svc = services(app)
    async with open_socket(server, scene.alice) as early:
        await early.subscribe(scene.conversation)
        await store_silently(svc.chat, scene.conversation, 3)
        async with open_socket(server, scene.cara) as late:
            await late.subscribe(scene.conversation, after=0)
            assert seqs(await late.collect(lambda fs: len(seqs(fs)) == 3)) == [1, 2, 3]
            [fourth] = await store_silently(svc.chat, scene.conversation, 1)
            await publish_about(svc.chat, scene.conversation, message_event(views.message(fourth)))
            assert seqs(await early.collect(lambda fs: 4 in seqs(fs))) == [1, 2, 3, 4]
            assert seqs(await late.collect(lambda fs: 4 in seqs(fs))) == [4]
            assert seqs(await late.quiet()) == []


async def test_a_subscribe_claiming_more_than_was_stored_misses_nothing_new(
    server: LiveServer, scene: Scene
) -> None:
    """`after` past the last seq (a client's stale state, a database restored
    from a backup): what is sent from then on still arrives, every seq."""
    await scene.alice.send(scene.conversation, "one")
    async with open_socket(server, scene.cara) as ws:
        assert (await ws.subscribe(scene.conversation, after=4))["last_seq"] == 1
        for text in ("two", "three", "four"):
            await scene.alice.send(scene.conversation, text)
        delivered = await ws.collect(lambda fs: 4 in seqs(fs))
        assert seqs(delivered) == [2, 3, 4]
