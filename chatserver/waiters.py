"""Tasks waiting for one thing to happen, held as futures in a list made
at the first wait.

asyncio's own primitives (`Event`, `Queue`) keep a deque from the start,
760 bytes even empty; a worker holds thousands of idle sockets and
channels, each with something to wait on and almost never anyone waiting
(issue 10 item 5, docs/performance.md). The outbox, the socket's receive
queue and flow-control gate, and a broker channel's confirmation wait with
this instead.
"""

from __future__ import annotations

import asyncio


class Waiters:
    __slots__ = ("_futures",)

    def __init__(self) -> None:
        self._futures: list[asyncio.Future[None]] | None = None

    async def wait(self) -> None:
        """Until the next `wake_all`. A cancelled wait leaves nothing behind."""
        waiter = asyncio.get_running_loop().create_future()
        if self._futures is None:
            self._futures = []
        self._futures.append(waiter)
        try:
            await waiter
        finally:
            if self._futures is not None and waiter in self._futures:
                self._futures.remove(waiter)

    def wake_all(self) -> None:
        """Let every task waiting now go on (later waits wait for the next)."""
        futures, self._futures = self._futures, None
        for waiter in futures or ():
            if not waiter.done():
                waiter.set_result(None)
