"""Sending messages with group commit: the queue that batches sends and
settles them (send → rate limit and `send_plan` → persist → publish).

Every send of a worker goes through one `SendQueue`. Sends that arrive while
a batch is being written wait for the next batch, so under load one write
stores hundreds of messages. Only after the commit are the senders
acknowledged (SPEC section 3.1) and then the events published, within
`CHAT_PUBLISH_TIMEOUT` (`chat/send_publish.py`): a stalled broker never
holds an ack back, and rooms catch up from the database (issue 16). A send
not answered within `CHAT_SEND_TIMEOUT` (a slow database, an exhausted
pool) is answered `unavailable`; the client's retry with the same client_id
finds the message if it committed after all, and publishes it again. That
bound is kept by one task for the whole queue, not a timer per send: sends
are answered about in the order they came, so the oldest one unanswered is
the next to run out of time.

Nothing per message depends on the size of the organisation (issue 10):
no row per recipient (the bell is derived from read positions, see
`chat/bell.py`), one event per message per channel, never one per staff
member.

The senders' rate limits are spent for the whole batch in one round trip
to Redis (`Limits.take_sends`), asked when the writer takes the batch and
awaited once its snapshot is read, so the limit costs a send no hop of
its own (it used to be checked before the send was queued).

One send path (issue 10): both writers read a snapshot (tenancy, policy
facts, client ids stored, attachments claimed) and store the plan that
`chat/send_plan.py` makes of it, the one statement of the send rule. They
differ only in how they store: on PostgreSQL a batch takes the fast writer
(`chat/send_fast.py`), and what it cannot store goes to the careful writer
(`chat/send_careful.py`), which is also the whole SQLite path. The plan
defers a conversation's sends together, so their order and the
first-message rule are kept. A refusal decided on the snapshot is final: it
was the rule's answer at a moment after the send arrived.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from chatserver.chat import events, send_careful, send_fast
from chatserver.chat.limits import Limits
from chatserver.chat.send_facts import SendFacts
from chatserver.chat.send_publish import BoundedPublisher
from chatserver.chat.send_request import Outcome, SendRequest, SendResult
from chatserver.errors import ChatError, unavailable
from chatserver.ops import faults
from chatserver.store.db import Database

log = logging.getLogger(__name__)


class SendQueue:
    def __init__(
        self,
        db: Database,
        publisher: events.Events,
        limits: Limits,
        clock: Callable[[], datetime],
        *,
        max_batch: int,
        writers: int,
        publish_timeout: float = 1.0,
        send_timeout: float = 10.0,
        on_stored: Callable[[int, float], None] | None = None,
    ) -> None:
        self._db = db
        self.limits = limits
        # What the fast writer remembers of the conversations it wrote to.
        self.facts = SendFacts()
        self._publisher = BoundedPublisher(publisher, publish_timeout)
        self._clock = clock
        self._max_batch = max_batch
        self._writers = writers
        # None is the stop sign: one per writer, queued behind every send.
        self._queue: asyncio.Queue[SendRequest | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_stored = on_stored
        self._send_timeout = send_timeout
        # Sends not known to be answered, oldest first (`_expire_forever`).
        self._unanswered: deque[SendRequest] = deque()
        self._expiry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_forever()) for _ in range(self._writers)]
        self._expiry = loop.create_task(self._expire_forever())

    async def stop(self) -> None:
        """Write what is queued, then stop. Writers are not cancelled: a
        cancel landing in redis-py's publish can be swallowed (Python 3.11),
        and a batch half-way through its commit is better finished."""
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        expiry, self._expiry = self._expiry, None
        if expiry is not None:
            expiry.cancel()
            await asyncio.gather(expiry, return_exceptions=True)
        await self._publisher.drain()
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request is not None and not request.future.done():
                request.future.set_exception(unavailable("The server is shutting down."))

    def queue(self, request: SendRequest) -> None:
        """Queue a send; its future gets the outcome, or `unavailable` once
        `send_timeout` has passed (a database that is slow or out of pooled
        connections): the client retries with the same client_id, which
        finds the message if this attempt committed after all."""
        request.deadline = asyncio.get_running_loop().time() + self._send_timeout
        unanswered = self._unanswered
        while unanswered and unanswered[0].future.done():
            unanswered.popleft()
        unanswered.append(request)
        self._queue.put_nowait(request)

    async def submit(self, request: SendRequest) -> SendResult:
        """`queue`, then wait for the outcome. Shielded: a caller that goes
        away must not cancel a send that may already be committed; its retry
        finds the message."""
        self.queue(request)
        return await asyncio.shield(request.future)

    async def _expire_forever(self) -> None:
        """Answer `unavailable` every send still unanswered at its deadline.
        Sleeps until the oldest unanswered send's deadline (or one whole
        bound while there is none: a send queued meanwhile has a later one)."""
        loop = asyncio.get_running_loop()
        unanswered = self._unanswered
        while True:
            now = loop.time()
            while unanswered and (unanswered[0].future.done() or unanswered[0].deadline <= now):
                self._expire(unanswered.popleft())
            await asyncio.sleep(unanswered[0].deadline - now if unanswered else self._send_timeout)

    def _expire(self, request: SendRequest) -> None:
        if request.future.done():
            return
        # A writer that takes it later skips it; one writing it now
        # stores it, and the retry finds it.
        request.expired = True
        log.warning("a send waited over %.1f s; answered unavailable", self._send_timeout)
        request.future.set_exception(unavailable("The server is busy; try again."))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def _write_forever(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch and not self._queue.empty():
                request = self._queue.get_nowait()
                if request is None:
                    stopping = True
                    break
                batch.append(request)
            await self._write(batch)
            if stopping:
                return

    async def _write(self, batch: list[SendRequest]) -> None:
        started = asyncio.get_running_loop().time()
        batch = [request for request in batch if not request.expired]
        if not batch:
            return
        # Asked now, read while the writer reads its snapshot.
        limited = asyncio.ensure_future(self._limited(batch))
        try:
            if not self._db.writes_batches_in_one_statement:
                outcomes = await self._careful(batch, await limited)
                await self._settle(list(zip(batch, outcomes, strict=True)), started)
                return
            fast, careful = await send_fast.write(
                self._db, batch, self._clock(), limited, self.facts
            )
        finally:
            # Not awaited when the snapshot's read failed: nobody will.
            limited.cancel()
        await self._settle(
            [(r, o) for r, o in zip(batch, fast, strict=True) if o is not None], started
        )
        if careful:
            # Within their rate limits: those over it were refused by the plan.
            rest = [batch[i] for i in careful]
            await self._settle(list(zip(rest, await self._careful(rest, {}), strict=True)), started)

    async def _limited(self, batch: Sequence[SendRequest]) -> dict[int, ChatError]:
        """The batch's sends over their sender's rate limit; all of them
        `unavailable` if the limits fail otherwise than Redis being away
        (which they count in the worker)."""
        try:
            return await self.limits.take_sends([(r.viewer.kind.value, r.viewer.id) for r in batch])
        except Exception:
            log.exception("the rate limits of a send batch failed")
            return dict.fromkeys(range(len(batch)), unavailable())

    async def _settle(self, done: Sequence[tuple[SendRequest, Outcome]], started: float) -> None:
        """Answer the senders, then publish, within a bound.

        The ack needs only the commit (SPEC section 3.1): a stalled broker
        must never hold it back (issue 16). A publish that fails or times
        out is logged; rooms catch up from the database. Publishing before
        the next batch is written keeps one writer's batches in order."""
        stored = [s for _, (_, s) in done if s is not None]
        created = sum(1 for s in stored if not s.repeat)
        if created and self._on_stored is not None:
            self._on_stored(created, asyncio.get_running_loop().time() - started)
        if stored:
            faults.reached(faults.Fault.KILL_AFTER_COMMIT)
        for request, (result, _) in done:
            if request.future.done():
                continue
            if isinstance(result, ChatError):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)
        if stored:
            await self._publisher.publish(stored)

    async def _careful(
        self, batch: Sequence[SendRequest], limited: Mapping[int, ChatError]
    ) -> list[Outcome]:
        return await send_careful.write(self._db, batch, self._clock, limited)
