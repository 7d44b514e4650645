"""One socket's state in the hub: who it is, what it follows, and its outbox.

Kept deliberately small (slots, no tasks of its own): a worker holds
thousands of these, and an idle one should cost a few hundred bytes beyond
the socket itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from chatserver.chat.identity import Viewer
from chatserver.chat.ratelimit import TokenBucket
from chatserver.waiters import Waiters


def _no_writer() -> None:
    """Until the transport attaches its writer, frames only wait."""


class Outbox:
    """The bounded queue of encoded frames between the hub and one socket.

    Fan-out uses `offer`, which never waits: a full outbox means the client
    cannot keep up, and the hub disconnects it rather than slow anyone else
    (SPEC 3.5). The connection's own reader uses `put` for answers and
    history, which waits while the outbox is half full, so a long history
    replay paces itself and always leaves half the queue to live fan-out.

    Every queued frame calls `wake`, with which the transport arranges for
    the frames to be written: all at once with `flush` where the socket
    can take them, else by a writer that `take`s them one by one until
    none is left, and ends. An idle socket so has no writer task at all.
    """

    __slots__ = ("_capacity", "_items", "_putters", "closed", "wake")

    def __init__(self, capacity: int) -> None:
        self._capacity = max(capacity, 2)
        # A list, not a deque: an empty deque is 760 bytes, and most sockets
        # of a worker have nothing queued; the writer drains it as it fills.
        self._items: list[str] = []
        self._putters = Waiters()
        self.closed = False
        self.wake: Callable[[], None] = _no_writer

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, frame: str) -> bool:
        """Queue a frame now; False if the outbox is full (the client is too slow)."""
        if self.closed:
            return True
        if len(self._items) >= self._capacity:
            return False
        self._items.append(frame)
        self.wake()
        return True

    async def put(self, frame: str) -> None:
        """Queue a frame once the outbox is less than half full."""
        while not self.closed and len(self._items) >= self._capacity // 2:
            await self._putters.wait()
        if not self.closed:
            self._items.append(frame)
            self.wake()

    async def put_within(self, frame: str, seconds: float) -> bool:
        """`put`, waiting at most `seconds` for the outbox to drain; False if
        it did not (the client does not read). Without a wait when there is
        room, so a catch-up to fast readers costs no timer per frame."""
        if self.closed or len(self._items) < self._capacity // 2:
            if not self.closed:
                self._items.append(frame)
                self.wake()
            return True
        try:
            async with asyncio.timeout(seconds):
                await self.put(frame)
        except TimeoutError:
            return False
        return True

    def flush(self, write: Callable[[Sequence[str]], bool]) -> bool:
        """Hand every queued frame to `write` at once; False if it did not
        take them (they stay queued, for `take`)."""
        if self.closed or not self._items:
            return True
        if not write(self._items):
            return False
        self._items.clear()
        self._putters.wake_all()
        return True

    def take(self) -> str | None:
        """The next frame for the writer, or None when there is none (or the
        outbox is closed): the writer then ends."""
        if self.closed or not self._items:
            return None
        frame = self._items.pop(0)
        if len(self._items) < self._capacity // 2:
            self._putters.wake_all()
        return frame

    def close(self) -> None:
        """Drop what is queued and wake everyone waiting."""
        self.closed = True
        self._items.clear()
        self._putters.wake_all()


class Connection:
    """A signed-in socket as the hub sees it."""

    __slots__ = (
        "close_code",
        "conversations",
        "frames",
        "inbox_channel",
        "outbox",
        "person_channel",
        "stop_reading",
        "ticket",
        "viewer",
        "writer",
    )

    def __init__(self, viewer: Viewer, queue_size: int, frames: TokenBucket, ticket: str) -> None:
        self.viewer = viewer
        # The socket's place in the per-person connection count.
        self.ticket = ticket
        self.outbox = Outbox(queue_size)
        # The socket's budget of frames other than sends (SPEC 5): a
        # subscribe can replay a whole history, so their rate is bounded per
        # socket; sends have the per-person limit instead.
        self.frames = frames
        # What the socket follows, by name: the hub holds the rooms (and a
        # connection knows nothing of them, so neither imports the other).
        self.conversations: set[str] = set()
        self.inbox_channel: str | None = None
        self.person_channel: str | None = None
        # Set when the server decides to close the socket (slow, too large).
        self.close_code: int | None = None
        # The socket's writer task while frames wait, cancelled when the
        # client is cut off while a write is stuck on a full TCP buffer.
        self.writer: asyncio.Task[None] | None = None
        # The transport's way to end the socket once nothing more can be
        # written to it.
        self.stop_reading: Callable[[], None] = _no_writer

    @property
    def role(self) -> str:
        return self.viewer.kind.value

    def is_person(self, kind: object, person_id: object) -> bool:
        return self.viewer.id == person_id and self.viewer.kind.value == kind

    def push(self, frame: str) -> bool:
        """Fan-out's entry: False if the client cannot keep up."""
        return self.outbox.offer(frame)

    def unhook(self) -> None:
        """The transport is done with the socket: forget its writer starter
        and its reader stopper. Both are its closures, and they hold this
        connection: kept, they and the connection would be a reference
        cycle, freed only by the cycle collector (a pause when thousands of
        sockets close), not by reference counting as the socket goes."""
        self.outbox.wake = _no_writer
        self.stop_reading = _no_writer

    def cut_off(self, code: int) -> None:
        """Stop sending: close the outbox, stop the writer (stuck on the
        socket, or not started yet), and end the socket with `code`.

        Reading is stopped here, not left to the writer's `finally`: a
        writer cancelled before its first step (started by a push in the
        same loop step as this) never enters its coroutine, so its
        `finally` never runs, and the socket would stay open until the
        client next sent something."""
        if self.close_code is None:
            self.close_code = code
        self.outbox.close()
        if self.writer is not None:
            self.writer.cancel()
        self.stop_reading()
