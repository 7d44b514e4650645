"""A worker behind on handshakes refuses more at once (503, Retry-After)
instead of queueing work for clients that will have left
(`chatserver/web/admission.py`), on both backends."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from chatserver.web.admission import RETRY_AFTER_SECONDS, HandshakeGate
from tests.conftest import Scene
from tests.waits import eventually_async
from tests.ws_helpers import LiveServer, open_socket

# Short enough for a test, long enough that a free slot is never missed.
WAIT = 0.3


async def test_a_handshake_past_the_limit_waits_then_is_refused() -> None:
    gate = HandshakeGate(limit=2, wait=WAIT)
    async with AsyncExitStack() as held:
        assert await held.enter_async_context(gate.admit())
        assert await held.enter_async_context(gate.admit())
        async with gate.admit() as third:
            assert third is False
        assert gate.refused == 1

        # A handshake waiting when a slot frees takes it.
        admitted = asyncio.Event()

        async def fourth() -> None:
            async with gate.admit() as ok:
                if ok:
                    admitted.set()

        waiting = asyncio.create_task(fourth())
        await asyncio.sleep(0)  # the fourth is now queued on the semaphore
        assert not admitted.is_set()
        await held.aclose()
        await asyncio.wait_for(admitted.wait(), WAIT)
        await waiting
    assert gate.refused == 1


async def test_a_busy_worker_answers_503_and_a_client_that_comes_back_gets_in(
    server: LiveServer, scene: Scene, app: Any
) -> None:
    gate = HandshakeGate(limit=1, wait=WAIT)
    app.state.services.handshakes = gate
    async with AsyncExitStack() as busy:
        assert await busy.enter_async_context(gate.admit())
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(server, scene.alice) as ws:
                await ws.send({"type": "ping"})  # never reached: refused
        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        assert gate.refused == 1
    # The slot is free again: the same client, retrying, is served.
    async with open_socket(server, scene.alice) as ws:
        await ws.send({"type": "ping"})
        assert await ws.recv() == {"type": "pong"}
    assert gate.refused == 1
    await eventually_async(
        lambda: app.state.services.hub.local_connections() == {},
        within=5,
        what="the served socket closed",
    )
