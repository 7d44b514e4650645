"""Admission of WebSocket handshakes: a worker that is behind refuses new
ones at once instead of queueing them.

When a worker dies, all of its clients reconnect to the others at once
(docs/performance.md, "The reconnect storm"). Each handshake checks a
session in the database and claims a connection slot in Redis. Queued
without a bound, those checks finish long after the clients' own handshake
timeout (5 s in `static/js/socket.js`): the worker spends its CPU on
clients that have left, they retry, and the queue never drains. So at most
`MAX_HANDSHAKES` run at once per worker; a handshake that cannot start
within `WAIT_SECONDS` is refused with HTTP 503 and `Retry-After`, which
costs the worker nearly nothing, and its client backs off and comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.responses import PlainTextResponse, Response

from chatserver.ops import instruments

# Handshakes checked at once per worker: enough to keep the database pool
# (10 + 10 overflow) busy, few enough that one finishes well inside a
# client's patience.
MAX_HANDSHAKES = 32
# How long a handshake may wait for its turn: under the client's 5 s
# handshake timeout, with time left for the check itself.
WAIT_SECONDS = 2.0
# What a refused client is told to wait, in seconds (its own backoff and
# jitter spread the retries).
RETRY_AFTER_SECONDS = 1


class HandshakeGate:
    """A bounded number of handshakes in progress, and a bounded wait."""

    def __init__(self, limit: int = MAX_HANDSHAKES, wait: float = WAIT_SECONDS) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._wait = wait
        # Handshakes this gate refused (the worker's metric counts them too).
        self.refused = 0

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[bool]:
        """Yields True while the handshake holds a slot, or False at once
        once it waited `wait` seconds for one (refuse it)."""
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            self.refused += 1
            instruments.HANDSHAKES_REFUSED.inc()
            yield False
            return
        try:
            yield True
        finally:
            self._slots.release()


def busy() -> Response:
    """The refusal of a handshake the worker has no time for."""
    return PlainTextResponse(
        "This server is busy; try again shortly.",
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
