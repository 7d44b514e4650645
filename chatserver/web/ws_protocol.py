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
for `chatserver serve` and the tests' live server alike. Nothing else of
uvicorn's changes: framing, flow control, keepalive pings and closing are
its own. `tests/web/test_ws_protocol.py` checks that an open socket's
protocol holds none of the above, so an upgrade of uvicorn or websockets
that keeps them elsewhere fails there rather than quietly costing the
memory again.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from chatserver.waiters import Waiters

T = TypeVar("T")


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
