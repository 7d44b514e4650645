"""A socket's whole life leaves no cyclic garbage of chatserver's own.

Objects freed by reference counting cost nothing; objects in reference
cycles wait for the cycle collector, and a worker where thousands of idle
sockets closed at once then stops for a whole pass over them (0.6 to 1.5 s
measured with 5,000 sockets, every message in flight waiting). So a
socket's handshake, subscribe, send, and its close by the client or by the
server must leave nothing of ours in a cycle: no chatserver object and no
frame of chatserver code (a cancelled task's traceback keeps its frames,
which keep their locals, which keep the task: the typical cycle).

What remains is other libraries' (the client side of the test, websockets,
uvicorn, asyncio, SQLAlchemy), bounded per lifecycle so that it cannot grow
unnoticed; a failure prints what the garbage is made of.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chatserver.chat import events
from chatserver.ops import instruments
from chatserver.realtime.hub import Hub
from chatserver.settings import Settings
from tests.conftest import Scene
from tests.helpers import context_of
from tests.realtime.garbage import chatserver_name, collector_off, counts, in_cycles, released
from tests.realtime.test_slow_clients import SEND_BUFFER, tiny_window_socket
from tests.ws_helpers import LiveServer, open_socket

LIFECYCLES = 20
# Cyclic garbage that is other libraries' own, per socket and per send
# (`_check` prints what it is made of). Per socket, measured 38 objects on
# both backends: uvicorn's HTTP protocol and its httptools parser (which
# holds the protocol's bound methods), its FlowControl, and the server's
# and the client's asyncio transports (each holds its own bound
# `_read_ready` method). Before the fixes, 170 to 190 per socket, with our
# rooms, connections, subscriptions and their frames among them. Per send,
# measured 0 since the send's and the inbox feed's statements are built
# once (84 on SQLite and 74 on PostgreSQL before: an EXISTS, a scalar
# subquery or an IN built afresh memoises a comparator that refers back to
# it; tests/realtime/test_send_garbage.py measures a stream of sends). The
# bounds leave room for library versions, not for a cycle of ours, which
# `_check` finds anyway.
MAX_PER_SOCKET = 50
MAX_PER_SEND = 10
# Objects of ours that are not on a cycle but held by another library's:
# a frame that a caught exception's traceback keeps (redis-py keeps one
# when a new connection's CLIENT MAINT_NOTIFICATIONS is refused, with the
# frames of the command that opened the connection). A few, never one per
# lifecycle.
MAX_HELD = 5


# The slow client's frames: big, so that a few dozen fill its TCP window
# and a short outbox (`settings` below).
SLOW_BODY = "x" * 4000
SLOW_MESSAGES = 300


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A short outbox, so that the slow client overflows it after few frames.
    return settings.with_(ws_send_queue=16)


@pytest.fixture
def send_buffer() -> int:
    return SEND_BUFFER


async def _client_closes(server: LiveServer, scene: Scene) -> None:
    """Handshake, the inbox feed, subscribe, send and receive, close by the client."""
    async with open_socket(server, scene.alice) as ws:
        await ws.send({"type": "inbox"})
        await ws.subscribe(scene.conversation)
        await ws.send(
            {
                "type": "send",
                "conversation": scene.conversation,
                "client_id": str(uuid.uuid4()),
                "body": "hello",
            }
        )
        await ws.next_of("ack")
        # The inbox feed's answer to the send: its query is over when the
        # socket closes (a query cancelled in flight leaves the database
        # driver's and SQLAlchemy's cycles, holding our frames too).
        await ws.next_of("inbox")
        await ws.send({"type": "ping"})
        await ws.next_of("pong")


async def _server_closes(server: LiveServer, scene: Scene, app: Any) -> None:
    """Handshake, subscribe, then closed by the server: the person's access
    changed (the same path as a sign-out, and as a slow client's cut-off)."""
    chat = app.state.services.chat
    async with open_socket(server, scene.cara) as ws:
        await ws.subscribe(scene.conversation)
        await ws.send({"type": "ping"})
        await ws.next_of("pong")
        await chat.events.to_person(
            "candidate", scene.cara.id, events.disconnect(events.DisconnectReason.ACCESS_CHANGED)
        )
        assert await ws.closed_code() == 1012


async def _too_slow(server: LiveServer, scene: Scene, app: Any) -> None:
    """Closed by the server as too slow: a client that does not read, whose
    writer is cut off while stuck on a full TCP buffer (SPEC 3.5). Another
    socket paces the frames published; no database write is involved."""
    chat = app.state.services.chat
    ctx = await context_of(chat, scene.conversation)
    # From no one whose message rings a bell: only the messages are paced.
    sender = {"kind": "system", "id": "system", "name": "System"}
    before = instruments.TOTALS.slow_disconnects
    async with (
        open_socket(server, scene.cara, sock=tiny_window_socket(server.port), max_queue=1) as slow,
        open_socket(server, scene.bob) as fast,
    ):
        await slow.subscribe(scene.conversation)
        await fast.subscribe(scene.conversation)
        for seq in range(1, SLOW_MESSAGES + 1):
            message = {"seq": seq, "body": SLOW_BODY, "created_at": None, "sender": sender}
            await chat.events.publish([(ctx, events.message_event(message))])
            await fast.next_of("message")
            if instruments.TOTALS.slow_disconnects > before:
                break
        assert instruments.TOTALS.slow_disconnects == before + 1, "never cut off"
        assert await slow.closed_code(within=15) in (1013, None)


async def _garbage_of(
    lifecycle: Callable[[], Awaitable[None]], server: LiveServer, hub: Hub
) -> list[object]:
    """The cyclic garbage LIFECYCLES runs of `lifecycle` leave."""
    await lifecycle()  # warm-up: caches, pools, lazily made objects
    await released(server, hub)
    with collector_off() as garbage:
        for _ in range(LIFECYCLES):
            await lifecycle()
        await released(server, hub)
    return garbage


def _check(garbage: list[object], *, sockets: int, sends: int = 0) -> None:
    """None of ours on a cycle; few of ours held by other libraries'
    cycles; the garbage per lifecycle bounded."""
    try:
        report = counts(garbage)
        cyclic = in_cycles(garbage)
        ours: Counter[str] = Counter()
        held: Counter[str] = Counter()
        for obj in garbage:
            name = chatserver_name(obj)
            if name is not None:
                (ours if id(obj) in cyclic else held)[name] += 1
        print(
            f"cyclic garbage of {LIFECYCLES} lifecycles: {len(garbage)} objects\n{report}\n"
            f"ours on cycles: {dict(ours)}\nours held by other cycles: {dict(held)}"
        )
        assert not ours, f"chatserver objects on cycles: {dict(ours)}\n{report}"
        assert sum(held.values()) <= MAX_HELD, f"held by other cycles: {dict(held)}\n{report}"
        bound = (sockets * MAX_PER_SOCKET + sends * MAX_PER_SEND) * LIFECYCLES
        assert len(garbage) <= bound, report
    finally:
        garbage.clear()


@pytest.mark.parametrize("backend", ["embedded", "production"])
async def test_a_socket_closed_by_its_client_leaves_no_cycles_of_ours(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    hub = app.state.services.hub
    garbage = await _garbage_of(lambda: _client_closes(server, scene), server, hub)
    _check(garbage, sockets=1, sends=1)


@pytest.mark.parametrize("backend", ["embedded", "production"])
async def test_a_socket_closed_by_the_server_leaves_no_cycles_of_ours(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    hub = app.state.services.hub
    _check(await _garbage_of(lambda: _server_closes(server, scene, app), server, hub), sockets=1)


@pytest.mark.parametrize("backend", ["embedded", "production"])
async def test_a_socket_cut_off_as_too_slow_leaves_no_cycles_of_ours(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    hub = app.state.services.hub
    _check(await _garbage_of(lambda: _too_slow(server, scene, app), server, hub), sockets=2)
