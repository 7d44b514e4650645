"""uvicorn's Sans-I/O WebSocket protocol, holding less for each idle socket.

A worker holds thousands of sockets that mostly wait (issue 10: at most
20 KiB of server memory per idle, subscribed connection). A tracemalloc
count of idle sockets (docs/performance.md, "Memory per idle connection")
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

`LeanWebSocketProtocol` is that protocol with a queue and a gate that keep
a list instead, and it lets go of the handshake once it is answered; it
is what `web/server.py` gives uvicorn as its `ws` protocol, for `chatserver
serve` and the tests' live server alike. Nothing else of uvicorn's changes:
framing, flow control, keepalive pings and closing are its own.
`tests/web/test_ws_protocol.py` checks that the attributes it replaces
and drops are still the ones uvicorn uses, so an upgrade of uvicorn that
renames them fails there rather than quietly costing the memory again.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

T = TypeVar("T")


def _wake(waiters: list[asyncio.Future[None]] | None) -> None:
    for waiter in waiters or ():
        if not waiter.done():
            waiter.set_result(None)


class ReceiveQueue(Generic[T]):
    """The part of `asyncio.Queue` uvicorn's receive path uses (`put_nowait`,
    `get`, `empty`), holding a list: 56 bytes empty, where the queue's
    deques take about 3 KiB."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._getters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        getters, self._getters = self._getters, None
        _wake(getters)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        """The oldest item, once there is one. A get cancelled while an
        item arrives leaves the item for the next get."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(waiter)
            try:
                await waiter
            finally:
                if self._getters is not None and waiter in self._getters:
                    self._getters.remove(waiter)
        return self._items.pop(0)


class Gate:
    """`asyncio.Event`'s `set`, `clear`, `is_set` and `wait`, with waiters
    kept in a list made only when someone waits (the event keeps a deque
    of 760 bytes from the start)."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        if not self._open:
            self._open = True
            waiters, self._waiters = self._waiters, None
            _wake(waiters)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if self._open:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
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
