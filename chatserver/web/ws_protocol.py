"""uvicorn's Sans-I/O WebSocket protocol, holding less for each idle socket.

A worker holds thousands of sockets that mostly wait (issue 10: at most
20 KiB of server memory per idle, subscribed connection). A tracemalloc
count of idle sockets (docs/performance.md, "Idle sockets under 20 KiB")
found uvicorn's protocol keeping, for each socket, for as long as it is
open:

- an `asyncio.Queue` for the frames received, four deques of 760 bytes
  each (its items, getters, putters and its `join` event), although the
  socket's own task is its only reader and uvicorn pauses reading after
  each frame, so it holds one or two at most;
- an `asyncio.Event` for flow control (one more deque);
- the handshake's request and response, with their headers, read never
  again once the handshake is answered (the request is also a local of
  websockets' parser generator, so its headers are cleared too).

`LeanWebSocketProtocol` is that protocol with a queue and a gate that wait
with `chatserver.waiters` instead, and it lets go of the handshake once it
is answered; it is what `web/server.py` gives uvicorn as its `ws` protocol,
for `chatserver serve` and the tests' live server alike.

It also offers the app one thing ASGI has no word for: writing text frames
at once, from a plain callback (`write_texts`, under the scope's extension
`WRITE_TEXTS`). Through ASGI, every frame is an awaited `send` in a task:
a live message's frames to its room's sockets are most of what a worker
does (issue 10), and a task per burst of frames cost more than the frames.
Whenever the socket cannot take a frame at once (its transport is paused
for a slow reader, or it is closing), `write_texts` writes nothing and
says so, and the app takes the ASGI way, which waits or fails as uvicorn
decides. Framing, flow control, keepalive pings and closing stay uvicorn's
and websockets' own.

`tests/web/test_ws_protocol.py` checks that an open socket's protocol
holds none of the above, and that its frames are written at once, so an
upgrade of uvicorn or websockets that changes either fails there rather
than quietly costing the memory or the tasks again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from chatserver.waiters import Waiters

T = TypeVar("T")

# The scope extension under which an open socket's protocol offers
# `write_texts`, as {"write": write_texts} (absent under other servers: the
# app then only uses ASGI).
WRITE_TEXTS = "chatserver.write_texts"
# A socket whose peer stopped reading cannot be closed politely: the
# transport's `close` waits for its write buffer to drain, which it never
# does, so a client cut off as too slow (or failing its pings) kept its
# socket and megabytes of kernel buffer for as long as it liked. A close
# that has not completed after this long is an abort (a TCP reset).
ABORT_AFTER_SECONDS = 10.0


class AbortingClose:
    """The protocol's transport as uvicorn uses it, except that `close`
    becomes an `abort` after ABORT_AFTER_SECONDS unless the connection is
    lost first (`connection_lost` cancels it). Holds no reference to the
    protocol: the timer's reference to the transport, which holds the
    protocol, lasts only until the connection ends."""

    __slots__ = ("_abort", "_transport", "is_closing", "write")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._abort: asyncio.TimerHandle | None = None
        # The hot path's calls, without `__getattr__` on the way.
        self.write = transport.write
        self.is_closing = transport.is_closing

    def close(self) -> None:
        self._transport.close()
        if self._abort is None:
            loop = asyncio.get_running_loop()
            self._abort = loop.call_later(ABORT_AFTER_SECONDS, self._transport.abort)

    def connection_ended(self) -> None:
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ReceiveQueue(Generic[T]):
    """The part of `asyncio.Queue` uvicorn's receive path uses (`put_nowait`,
    `get`, `empty`), holding a list: 56 bytes empty, where the queue's
    deques take about 3 KiB."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._getters = Waiters()

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._getters.wake_all()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        """The oldest item, once there is one. A get cancelled while an
        item arrives leaves the item for the next get."""
        while not self._items:
            await self._getters.wait()
        return self._items.pop(0)


class Gate:
    """`asyncio.Event`'s `set`, `clear`, `is_set` and `wait`, without the
    event's deque."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = False
        self._waiters = Waiters()

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        if not self._open:
            self._open = True
            self._waiters.wake_all()

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if not self._open:
            await self._waiters.wait()
        return True


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """See the module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        writable = Gate()
        writable.set()
        self.writable = writable  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] != "websocket.send" and self.handshake_complete:
            # Answered (accepted, refused or denied): neither is read again.
            request = self.__dict__.pop("request", None)
            self.__dict__.pop("response", None)
            if request is not None:
                # websockets' parser keeps the request for the socket's
                # life too (a local of its generator): its headers go.
                request.headers.clear()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.handshake_initiated and not self.close_sent:
            # An ASGI extension's value is a dict of its own.
            self.scope["extensions"][WRITE_TEXTS] = {"write": self.write_texts}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport = AbortingClose(cast(asyncio.Transport, transport))  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        transport = self.__dict__.get("transport")
        if isinstance(transport, AbortingClose):
            transport.connection_ended()
        super().connection_lost(exc)
        # The app's task may hold the scope a while longer: without its
        # bound method, scope and protocol are no reference cycle.
        scope = self.__dict__.get("scope")
        if scope is not None:
            scope["extensions"].pop(WRITE_TEXTS, None)

    def write_texts(self, texts: Sequence[str]) -> bool:
        """Write these text frames now, in one write to the transport; or
        write none and return False when they must take `send`'s way: the
        transport is paused (a slow reader, whom `send` waits for) or the
        socket is closing (where `send` raises)."""
        if (
            self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.transport.is_closing()
        ):
            return False
        for text in texts:
            self.conn.send_text(text.encode())
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True
