"""An idle socket holds little (issue 10 item 5, `web/ws_protocol.py`),
and a busy one writes its frames without a task (`write_texts`).

The server's protocol of an open, subscribed, idle socket keeps neither
the handshake (request, response, headers) nor asyncio's deque-backed
queue and event; the queue and gate that replace them behave as the
asyncio ones do for uvicorn. Every other WebSocket test of the suite runs
through the same protocol (the live server takes `uvicorn_options`), the
slow-client tests through its flow control. The memory itself is measured
by `scripts/loadtest idle` and the peer benchmark (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import collections
import gc
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from chatserver.chat import events
from chatserver.realtime.connection import Connection
from chatserver.web.ws_protocol import WRITE_TEXTS, Gate, LeanWebSocketProtocol, ReceiveQueue
from tests.conftest import Scene
from tests.waits import eventually_async
from tests.ws_helpers import LiveServer, cookie_of, open_socket

# Long enough for a ready waiter to have run, were it woken.
A_FEW_STEPS = 0.05


def _heavy(value: Any) -> bool:
    """What an idle socket must not hold: a deque (760 bytes even empty),
    asyncio's queue or event (built on deques), the handshake."""
    return isinstance(value, collections.deque | asyncio.Queue | asyncio.Event | Request | Response)


async def test_an_open_idle_socket_keeps_no_handshake_and_no_deque(
    server: LiveServer, scene: Scene
) -> None:
    async with open_socket(server, scene.alice) as ws:
        await ws.subscribe(scene.conversation)
        protocol = _protocol(server)
        held = {name: type(v).__name__ for name, v in vars(protocol).items() if _heavy(v)}
        assert held == {}
        assert protocol.scope["headers"] == []
        # Nor anywhere else (websockets' parser keeps the request object):
        # the only headers left with her cookie are the client's own.
        cookie = cookie_of(scene.alice)
        assert ws.ws.request is not None
        client_headers = ws.ws.request.headers
        kept = [
            h
            for h in gc.get_objects()
            # type(), not isinstance(): the process holds weak proxies to
            # dead objects, which isinstance() would dereference.
            if type(h) is Headers and h.get("Cookie") == cookie and h is not client_headers
        ]
        assert kept == []
        # Still a working socket: a frame in, its answer out.
        await ws.send({"type": "ping"})
        await ws.expect("pong")


def _protocol(server: LiveServer) -> LeanWebSocketProtocol:
    """The server's protocol of the one socket open."""
    assert server.uvicorn is not None
    (protocol,) = [
        c for c in server.uvicorn.server_state.connections if isinstance(c, LeanWebSocketProtocol)
    ]
    return protocol


def _connection(app: Any, scene: Scene) -> Connection:
    """The hub's connection of Cara's one socket."""
    room = app.state.services.hub._people[events.person_channel("candidate", scene.cara.id)]
    (conn,) = room.members
    assert isinstance(conn, Connection)
    return conn


async def test_frames_are_written_at_once_and_in_order_without_a_writer_task(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    async with open_socket(server, scene.cara) as ws:
        await ws.send({"type": "ping"})
        await ws.expect("pong")
        protocol = _protocol(server)
        assert protocol.scope["extensions"][WRITE_TEXTS] == {"write": protocol.write_texts}
        conn = _connection(app, scene)
        for n in range(5):
            assert conn.push(f'{{"type": "probe", "n": {n}}}')
        assert len(conn.outbox) == 5
        await asyncio.sleep(0)
        # Flushed at the end of the step: one write, no task.
        assert len(conn.outbox) == 0
        assert conn.writer is None
        assert [(await ws.expect("probe"))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_a_paused_socket_gets_its_frames_through_asgi_once_it_resumes(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    """A transport paused for a slow reader takes nothing at once: a writer
    task waits for it, and frames queued meanwhile follow in order."""
    async with open_socket(server, scene.cara) as ws:
        await ws.send({"type": "ping"})
        await ws.expect("pong")
        protocol = _protocol(server)
        conn = _connection(app, scene)
        protocol.pause_writing()
        assert not protocol.write_texts(['{"type": "probe", "n": -1}'])
        conn.push('{"type": "probe", "n": 0}')
        await asyncio.sleep(A_FEW_STEPS)
        assert conn.writer is not None
        conn.push('{"type": "probe", "n": 1}')
        assert await ws.quiet(A_FEW_STEPS) == []
        protocol.resume_writing()
        assert [(await ws.expect("probe"))["n"] for _ in range(2)] == [0, 1]
        # Once it has drained the outbox the writer ends; pushes are
        # written at once again.
        await asyncio.sleep(A_FEW_STEPS)
        assert conn.writer is None
        conn.push('{"type": "probe", "n": 2}')
        assert (await ws.expect("probe"))["n"] == 2


async def test_a_closed_socket_lets_go_of_its_write_offer(server: LiveServer, scene: Scene) -> None:
    """The protocol's bound method leaves the scope with the socket, or
    scope and protocol would be a reference cycle (issue 10 item 5)."""
    async with open_socket(server, scene.cara) as ws:
        await ws.send({"type": "ping"})
        await ws.expect("pong")
        protocol = _protocol(server)
        scope = protocol.scope
    await eventually_async(
        lambda: WRITE_TEXTS not in scope["extensions"],
        within=5.0,
        what="the closed socket's scope let go of write_texts",
    )
    assert not protocol.write_texts(['{"type": "probe"}'])


async def test_the_receive_queue_gives_items_in_order_to_whoever_waits() -> None:
    queue: ReceiveQueue[int] = ReceiveQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(A_FEW_STEPS)
    assert not first.done()
    assert not second.done()
    for n in (1, 2, 3):
        queue.put_nowait(n)
    assert {await first, await second} == {1, 2}
    assert queue.qsize() == 1
    assert await queue.get() == 3
    assert queue.empty()


async def test_a_get_cancelled_as_an_item_arrives_leaves_it_for_the_next() -> None:
    queue: ReceiveQueue[str] = ReceiveQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(A_FEW_STEPS)
    queue.put_nowait("frame")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.wait_for(queue.get(), 1.0) == "frame"


async def test_the_gate_holds_waiters_until_set_and_lets_everyone_through() -> None:
    gate = Gate()
    waiters = [asyncio.create_task(gate.wait()) for _ in range(3)]
    await asyncio.sleep(A_FEW_STEPS)
    assert not any(w.done() for w in waiters)
    assert not gate.is_set()
    gate.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert await gate.wait()
    gate.clear()
    held = asyncio.create_task(gate.wait())
    await asyncio.sleep(A_FEW_STEPS)
    assert not held.done()
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    gate.set()
    assert gate.is_set()


async def test_the_error_answering_a_subscribe_names_its_conversation(
    server: LiveServer, scene: Scene
) -> None:
    """A page routes an error without `client_id` by its conversation: a
    candidate whose application went to someone else resubscribes after
    the reconnect and must learn which view is no longer theirs."""
    async with open_socket(server, scene.mallory) as ws:
        for conversation in (scene.conversation, "0000000000000000"):
            await ws.send({"type": "subscribe", "conversation": conversation, "after": 0})
            assert await ws.expect("error") == {
                "type": "error",
                "code": "not_found",
                "message": "No such conversation.",
                "conversation": conversation,
            }
        # Other frames' errors are as before.
        await ws.send({"type": "read", "conversation": scene.conversation, "seq": 1})
        assert "conversation" not in await ws.expect("error")
