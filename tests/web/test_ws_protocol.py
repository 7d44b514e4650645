"""An idle socket holds little (issue 10 item 5, `web/ws_protocol.py`).

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

from chatserver.web.ws_protocol import Gate, LeanWebSocketProtocol, ReceiveQueue
from tests.conftest import Scene
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
        assert server.uvicorn is not None
        (protocol,) = [
            c
            for c in server.uvicorn.server_state.connections
            if isinstance(c, LeanWebSocketProtocol)
        ]
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
