"""A real uvicorn server around the test's app, and a small WebSocket client.

The server runs in the test's own event loop on a free loopback port, with
the options `chatserver serve` uses (`uvicorn_options`: frame limit, no
compression, pings), so size limits and close codes are the ones production has.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chatserver.settings import Settings
from chatserver.web.server import uvicorn_options
from tests.helpers import Person
from tests.waits import eventually_async

# Every wait in these tests is bounded; a frame that has not come in this
# long is not coming.
FRAME_TIMEOUT = 5.0
SERVER_START_TIMEOUT = 10.0


class LiveServer:
    def __init__(self, port: int, server: uvicorn.Server | None = None) -> None:
        self.port = port
        # The uvicorn server itself, for tests that wait until it let go of
        # every connection (`server_state`).
        self.uvicorn = server

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


class _TestServer(uvicorn.Server):
    """uvicorn's server without its polling pauses, which would cost every
    test that serves a quarter of a second: the main loop waits for
    `stop()` instead of looking at `should_exit` every 0.1 s, and shutdown
    waits for the connections to go rather than sleeping 0.1 s and then
    checking every 0.1 s. Otherwise uvicorn's own: connections are asked
    to shut down and awaited (a bounded wait)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # sets the Date header
        await self._stopping.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        state = self.server_state
        await eventually_async(
            lambda: not state.connections and not state.tasks,
            within=SERVER_START_TIMEOUT,
            what="the test server's connections to close",
            every=0.005,
        )


@asynccontextmanager
async def live_server(
    app: Any, settings: Settings, *, send_buffer: int | None = None
) -> AsyncIterator[LiveServer]:
    """Serve `app` (whose lifespan the caller already runs) on a free port.

    `send_buffer` fixes the kernel send buffer of accepted sockets (they
    inherit it from the listener), so a test can fill it quickly.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    listener.bind(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        **uvicorn_options(settings),
        log_level="warning",
    )
    server = _TestServer(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    # uvicorn has a flag for it, not an event.
    await eventually_async(
        lambda: server.started or task.done(),
        within=SERVER_START_TIMEOUT,
        what="the test server to start",
        every=0.01,
    )
    if not server.started:
        raise RuntimeError("the test server did not start")
    try:
        yield LiveServer(port, server)
    finally:
        server.stop()
        await asyncio.wait_for(task, SERVER_START_TIMEOUT)
        listener.close()


class Socket:
    """One client socket: send frames as dicts, read frames as dicts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(
            frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
        )

    async def recv(self, within: float = FRAME_TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(within):
            return await self._next()

    async def _next(self) -> dict[str, Any]:
        value = orjson.loads(await self.ws.recv())
        assert isinstance(value, dict)
        return value

    async def expect(self, kind: str, within: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be of type `kind`."""
        frame = await self.recv(within)
        assert frame["type"] == kind, frame
        return frame

    async def next_of(self, kind: str, within: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame of type `kind`, skipping others."""
        async with asyncio.timeout(within):
            while True:
                frame = await self._next()
                if frame["type"] == kind:
                    return frame

    async def collect(
        self, done: Callable[[list[dict[str, Any]]], bool], within: float = FRAME_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Frames until `done(frames)` holds."""
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(within):
            while not done(frames):
                frames.append(await self._next())
        return frames

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Whatever arrives within `seconds` (usually asserted empty)."""
        frames: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    frames.append(await self._next())
        return frames

    async def subscribe(self, conversation: str, after: int = 0) -> dict[str, Any]:
        await self.send({"type": "subscribe", "conversation": conversation, "after": after})
        return await self.expect("subscribed")

    async def closed_code(self, within: float = FRAME_TIMEOUT) -> int | None:
        """Read until the server closes; the close code."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.ws.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None

    async def close(self) -> None:
        await self.ws.close()


def cookie_of(person: Person) -> str:
    value = person.client.cookies.get("chat_session")
    assert value, "the person is not signed in"
    return f"chat_session={value}"


@asynccontextmanager
async def open_socket(
    server: LiveServer,
    person: Person | None,
    *,
    origin: str | None = "http://testserver",
    **options: Any,
) -> AsyncIterator[Socket]:
    headers = {"Cookie": cookie_of(person)} if person is not None else {}
    # Unread frames never stop the client from reading the socket, so its
    # closing handshake completes even when a test leaves frames unread.
    options.setdefault("max_queue", None)
    async with connect(
        server.ws_url,
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        compression=None,
        open_timeout=FRAME_TIMEOUT,
        **options,
    ) as ws:
        yield Socket(ws)


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["message"]["seq"] for f in frames if f["type"] == "message"]


def had(frames: list[dict[str, Any]]) -> set[int]:
    """The seqs a client has: those of `message` frames and of the acks of
    its own sends (whose `message` copy the server may leave out)."""
    return {f["message"]["seq"] for f in frames if f["type"] in ("message", "ack")}


class Subscriptions:
    """The channels the app's broker subscribes to from now on, as each
    subscription goes live.

    The hub's feeds (inbox and person rooms: an organisation stream's taps
    and a person's broker listener) have no ready signal of their own; a
    test waits here, instead of sleeping, before it causes what such a room
    should relay. Wraps the broker's public
    `subscribe`, `route` and `listen`, so it works the same on every broker: a
    listener is live once a queue subscription of its channel (which waits
    for the broker to route the channel here) enters.
    """

    def __init__(self, broker: Any) -> None:
        self.channels: list[str] = []
        self._changed = asyncio.Condition()
        self._routing: set[asyncio.Task[None]] = set()
        subscribe = broker.subscribe
        listen = broker.listen
        route = broker.route

        async def record(channel: str) -> None:
            async with self._changed:
                self.channels.append(channel)
                self._changed.notify_all()

        @asynccontextmanager
        async def recorded(channel: str) -> AsyncIterator[Any]:
            async with subscribe(channel) as subscription:
                await record(channel)
                yield subscription

        @asynccontextmanager
        async def recorded_route(channel: str, callback: Any) -> AsyncIterator[None]:
            async with route(channel, callback):
                await record(channel)
                yield

        async def routed(channel: str) -> None:
            async with subscribe(channel):
                await record(channel)

        def recorded_listener(channel: str, callback: Any) -> Any:
            listener = listen(channel, callback)
            task = asyncio.create_task(routed(channel))
            self._routing.add(task)
            task.add_done_callback(self._routing.discard)
            return listener

        broker.subscribe = recorded
        broker.listen = recorded_listener
        broker.route = recorded_route

    async def live(self, prefix: str, within: float = FRAME_TIMEOUT) -> str:
        """The first channel starting with `prefix` to have a live subscription."""

        def found() -> str | None:
            return next((c for c in self.channels if c.startswith(prefix)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), within)
        channel = found()
        assert channel is not None
        return channel
