"""SPEC 3.5: a client that does not read is cut off; everybody else keeps
their latency."""

from __future__ import annotations

import socket
import time

import pytest

from chatserver.ops import instruments
from chatserver.settings import Settings
from chatserver.web import ws_protocol
from tests.conftest import Scene
from tests.waits import eventually_async
from tests.ws_helpers import LiveServer, open_socket

# Big frames fill the slow client's TCP window in a few dozen messages.
BODY = "x" * 4000
MESSAGES = 300
# What "latency holds" means here: each message reaches the fast client
# within this long of its send being acknowledged.
LATENCY_LIMIT = 1.0
# A fixed, small kernel send buffer on the server side: without it Linux
# grows the buffer to megabytes and the test would need thousands of sends.
SEND_BUFFER = 16384
# How long a close that cannot drain waits before it aborts, here.
ABORT_AFTER = 1.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A short outbox, so the test needs few messages to overflow it.
    return settings.with_(ws_send_queue=16)


@pytest.fixture
def send_buffer() -> int:
    return SEND_BUFFER


@pytest.fixture(autouse=True)
def quick_abort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_protocol, "ABORT_AFTER_SECONDS", ABORT_AFTER)


def held_by_server(server: LiveServer, sock: socket.socket) -> bool:
    """Whether the server still has a connection from this client socket."""
    assert server.uvicorn is not None
    here = sock.getsockname()
    return any(getattr(p, "client", None) == here for p in server.uvicorn.server_state.connections)


def tiny_window_socket(port: int) -> socket.socket:
    """A client socket whose receive buffer fills after a few kilobytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_client_that_never_reads_is_closed_while_others_keep_their_latency(
    server: LiveServer, scene: Scene
) -> None:
    slow_before = instruments.TOTALS.slow_disconnects
    sock = tiny_window_socket(server.port)
    async with (
        open_socket(server, scene.cara, sock=sock, max_queue=1) as slow,
        open_socket(server, scene.bob) as fast,
    ):
        await slow.subscribe(scene.conversation)
        await fast.subscribe(scene.conversation)
        worst = 0.0
        for n in range(MESSAGES):
            response = await scene.alice.send(scene.conversation, f"{n} {BODY}")
            assert response.status_code == 201
            sent = time.monotonic()
            frame = await fast.next_of("message", within=LATENCY_LIMIT)
            worst = max(worst, time.monotonic() - sent)
            assert frame["message"]["seq"] == n + 1
            if instruments.TOTALS.slow_disconnects > slow_before:
                break
        assert instruments.TOTALS.slow_disconnects == slow_before + 1, "never cut off"
        assert worst < LATENCY_LIMIT
        # Still not reading: the server lets go of the socket all the same
        # (a close that cannot drain becomes an abort), rather than keep it
        # and its full buffers for as long as the client likes.

        async def let_go() -> bool:
            return not held_by_server(server, sock)

        await eventually_async(let_go, within=ABORT_AFTER + 5, what="the socket let go")
        # The slow client, once it reads at last, finds its connection closed.
        assert await slow.closed_code(within=15) in (1013, None)
        await fast.send({"type": "ping"})
        await fast.next_of("pong")
