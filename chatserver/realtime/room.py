"""The room: one subscription, its reading task and the local sockets that
follow it (for a conversation; feeds, which need no task, are `feeds.py`'s).

A room holds exactly one subscription while it has local members (a
conversation's: its share of the organisation's stream, `streams.py`) and
runs one task that reads it. Each payload is decoded once, and the same
encoded text is queued to every member. Fan-out never awaits a member: a
member whose outbox is full is handed to `kick` (SPEC 3.5). What a room does
with a payload is its subclass's: `conversation_room.py` (messages in seq
order). Feeds (`feeds.py`) share `push` and `decode_event`.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson

from chatserver.broker.base import RESYNC, Resync, Subscription, SubscriptionClosed
from chatserver.chat.service import Chat
from chatserver.ops import instruments
from chatserver.realtime.connection import Connection

log = logging.getLogger(__name__)

# A room whose subscription or database read failed tries again soon, then
# backs off to a pace that does not hammer a service that is down.
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0
Kick = Callable[[Connection], None]


class Room(ABC):
    """One subscription, its members and its reading task.

    Slotted: a worker holds one room per followed conversation, thousands
    of them.
    """

    __slots__ = (
        "_kick",
        "_stopped",
        "_subscription",
        "_task",
        "_wait_until",
        "channel",
        "chat",
        "ready",
    )

    def __init__(self, channel: str, chat: Chat, kick: Kick) -> None:
        # The room's name in logs and task names.
        self.channel = channel
        self.chat = chat
        self._kick = kick
        # Set once the subscription is live; only rooms with joiners that
        # must wait for it (conversations) create one.
        self.ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # Loop time at which `_waited` runs unless cleared before.
        self._wait_until: float | None = None
        # The live subscription, closed by `stop` so the task ends even if
        # a library swallowed its cancellation (Python 3.11's wait_for does
        # when the awaited thing completes in the same loop iteration).
        self._subscription: Subscription | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"room {self.channel}")

    def stop(self) -> asyncio.Task[None] | None:
        """End the room: cancel its task and close its subscription, either
        of which alone ends it; leaving the subscription's context releases
        it at the broker.

        The room lets go of its task here (the caller waits for it): a
        cancelled task keeps its CancelledError, whose traceback keeps the
        task's frames, whose `self` is this room. Were the room still to
        hold the task, room and task would be a reference cycle, freed only
        by the cycle collector, a pause for thousands of closed sockets."""
        self._stopped = True
        if self._subscription is not None:
            self._subscription.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def nudge(self) -> None:
        """Events were lost (found by the hub's tail check): catch up from the
        database as after a Resync."""
        if self._subscription is not None and self.ready is not None and self.ready.is_set():
            self._subscription.offer(RESYNC)

    async def _run(self) -> None:
        delay = RETRY_MIN_SECONDS
        first = True
        while not self._stopped:
            try:
                # None: nothing to follow yet; look again after the pause.
                if (source := await self._follow()) is not None:
                    async with source as subscription:
                        self._subscription = subscription
                        if self._stopped:
                            return
                        await self._subscribed(first)
                        first = False
                        if self.ready is not None:
                            self.ready.set()
                        delay = RETRY_MIN_SECONDS
                        await self._consume(subscription)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room %s failed; subscribing again", self.channel)
            finally:
                self._subscription = None
            if self._stopped:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _consume(self, subscription: Subscription) -> None:
        """Handle events until the subscription ends; wake up for `_waited`
        whenever the room asks for it with `_wait_until`."""
        while not self._stopped:
            try:
                if self._wait_until is None:
                    # The usual case: no timer for each event.
                    event = await subscription.get()
                else:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for
                    # returns the result instead of raising when a cancel
                    # and the result arrive together, and the room would
                    # never stop.
                    async with asyncio.timeout_at(self._wait_until):
                        event = await subscription.get()
            except TimeoutError:
                self._wait_until = None
                await self._waited()
                continue
            except SubscriptionClosed:
                return
            if isinstance(event, Resync):
                instruments.record_resync()
                await self._resync()
            else:
                await self._payload(event.payload)

    @abstractmethod
    async def _follow(self) -> AbstractAsyncContextManager[Subscription] | None:
        """The subscription to open (its context yields once it is live),
        or None when there is nothing to follow yet."""

    @abstractmethod
    async def _waited(self) -> None:
        """The time set in `_wait_until` has come."""

    async def _subscribed(self, first: bool) -> None:
        """The subscription is live; a re-subscription may have missed events."""
        if not first:
            await self._resync()

    @abstractmethod
    async def _resync(self) -> None:
        """Events may have been lost since the last one received."""

    @abstractmethod
    async def _payload(self, payload: bytes) -> None:
        """Handle one published payload."""

    def _push(self, members: Sequence[Connection], frame: str) -> None:
        push(members, frame, self._kick)


def push(members: Sequence[Connection], frame: str, kick: Kick) -> None:
    """Queue one frame to every member without waiting; those whose outbox
    is full are handed to `kick` (after the others had theirs)."""
    slow = [conn for conn in members if not conn.push(frame)]
    instruments.record_delivered(len(members) - len(slow))
    for conn in slow:
        kick(conn)


def decode_event(payload: bytes) -> dict[str, Any] | None:
    """A published payload as a JSON object, or None (logged) when it is not one."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        log.warning("dropping a malformed broker payload")
        return None
    return value
