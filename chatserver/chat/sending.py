"""Sending messages with group commit: check → persist → publish.

Every send of a worker goes through one `SendQueue`. Sends that arrive while
a batch is being written wait for the next batch, so under load one write
stores hundreds of messages. Only after the commit are the senders
acknowledged (SPEC section 3.1) and then the events published, within
`CHAT_PUBLISH_TIMEOUT`: a stalled broker never holds an ack back, and rooms
catch up from the database (issue 16). A send not answered within
`CHAT_SEND_TIMEOUT` (a slow database, an exhausted pool) is answered
`unavailable`; the client's retry with the same client_id finds the
message if it committed after all, and publishes it again.

Nothing per message depends on the size of the organisation (issue 10):
no row per recipient (the bell is derived from read positions, see
`chat/bell.py`), one event per message per channel, never one per staff
member.

One send path (issue 10): both writers read a snapshot (tenancy, policy
facts, client ids stored, attachments claimed) and store the plan that
`chat/send_plan.py` makes of it, the one statement of the send rule. They
differ only in how they store:

On PostgreSQL a batch takes the fast writer (`chatserver/store/send_batch.py`):
one unlocked read, the plan, then ONE autocommitted statement that advances
each conversation's `last_seq` under a guard that re-checks the snapshot's
facts (still open, status and candidate unchanged) and inserts the
messages. The conversation row locks are therefore held for PostgreSQL's
execution of one statement, not across round trips that each wait for a
busy event loop, which is what queued batches of two workers behind each
other (docs/performance.md).

What the fast writer cannot store goes to the careful writer, which is also
the whole SQLite path: a client id already stored (the retry gets the
original, with its attachments), attachments, a staff message that reopens
an ended conversation, a conversation whose guard failed, and a write rolled
back as a whole (a client id stored concurrently by another worker, a
deadlock). The plan defers a conversation's sends together, so their order
and the first-message rule are kept. A refusal decided on the snapshot is
final: it was the rule's answer at a moment after the send arrived.

The careful writer reads the snapshot under row locks in id order, claims
attachments, plans, assigns seqs from the locked `last_seq` and writes
messages, attachment links and audit events in one transaction. If it fails
on a constraint, its sends are retried one by one, so one bad send never
costs the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import bell, events, send_plan, timeline, views
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.errors import ChatError, ErrorCode, invalid, unavailable
from chatserver.json_types import JSON
from chatserver.ops import faults
from chatserver.store import attachments as attachment_store
from chatserver.store import audit, contexts, conversations, messages, send_batch
from chatserver.store.contexts import ConversationContext, SendContext
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# Message ids: 16 random bytes, as hex.
MESSAGE_ID_BYTES = 16


@dataclass
class SendRequest:
    viewer: Viewer
    conversation_id: str
    client_id: str
    body: str
    html: str
    attachment_ids: tuple[str, ...] = ()
    # How the message arrived when not through the app ("email"), stored
    # with it and shown on it (MESSAGE `via`).
    via: str | None = None
    future: asyncio.Future[SendResult] = field(default_factory=lambda: _new_future())
    # Answered `unavailable` before a writer took it: it is never written
    # (the client retries), so an overloaded queue sheds what nobody awaits.
    expired: bool = False

    @property
    def key(self) -> send_batch.ClientKey:
        return (self.viewer.kind.value, self.viewer.id, self.client_id)


@dataclass(frozen=True)
class SendResult:
    message: JSON
    created: bool  # False: a retry that returned the original message


def _new_future() -> asyncio.Future[SendResult]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Stored:
    """A message to publish after commit: written in this batch, or found
    stored by a retry (`repeat`), which publishes its `message` event again
    in case the first attempt committed but never published (a worker
    killed in between, a broker that timed out); rooms drop repeats by seq."""

    message: JSON
    org_id: str
    context: SendContext | None  # the conversation, when sending reopened it
    job_title: str = ""
    candidate_id: str = ""
    repeat: bool = False
    # System lines stored just before the message (its reopening), published first.
    lines: list[JSON] = field(default_factory=list)


Outcome = tuple[SendResult | ChatError, _Stored | None]


class SendQueue:
    def __init__(
        self,
        db: Database,
        publisher: events.Events,
        clock: Callable[[], datetime],
        *,
        max_batch: int,
        writers: int,
        publish_timeout: float = 1.0,
        send_timeout: float = 10.0,
        on_stored: Callable[[int, float], None] | None = None,
    ) -> None:
        self._db = db
        self._events = publisher
        self._clock = clock
        self._max_batch = max_batch
        self._writers = writers
        # None is the stop sign: one per writer, queued behind every send.
        self._queue: asyncio.Queue[SendRequest | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_stored = on_stored
        self._publish_timeout = publish_timeout
        self._send_timeout = send_timeout
        # Publishes still running after their bound (kept referenced).
        self._publishing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_forever()) for _ in range(self._writers)]

    async def stop(self) -> None:
        """Write what is queued, then stop. Writers are not cancelled: a
        cancel landing in redis-py's publish can be swallowed (Python 3.11),
        and a batch half-way through its commit is better finished."""
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._publishing:
            await asyncio.wait(set(self._publishing), timeout=self._publish_timeout)
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request is not None and not request.future.done():
                request.future.set_exception(unavailable("The server is shutting down."))

    async def submit(self, request: SendRequest) -> SendResult:
        """The send's outcome, or `unavailable` once `send_timeout` has
        passed (a database that is slow or out of pooled connections): the
        client retries with the same client_id, which finds the message if
        this attempt committed after all."""
        self._queue.put_nowait(request)
        # Shield: a client that disconnects (or the bound) must not cancel a
        # send that may already be committed; its retry finds the message.
        done, _ = await asyncio.wait({request.future}, timeout=self._send_timeout)
        if not done:
            request.expired = True
            # Its outcome, if a writer had it already, is nobody's to read.
            request.future.add_done_callback(lambda f: f.cancelled() or f.exception())
            log.warning("a send waited over %.1f s; answered unavailable", self._send_timeout)
            raise unavailable("The server is busy; try again.")
        return request.future.result()

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
        if self._db.is_sqlite:
            await self._settle(list(zip(batch, await self._careful(batch), strict=True)), started)
            return
        outcomes, careful = await self._fast(batch)
        await self._settle(
            [(r, o) for r, o in zip(batch, outcomes, strict=True) if o is not None], started
        )
        if careful:
            rest = [batch[i] for i in careful]
            await self._settle(list(zip(rest, await self._careful(rest), strict=True)), started)

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
            await self._publish(stored)

    async def _fast(self, batch: Sequence[SendRequest]) -> tuple[list[Outcome | None], list[int]]:
        """The PostgreSQL fast path: each request's outcome, or None for the
        indices (second list, ascending) that must take the careful path."""
        now = self._clock()
        ids = _message_ids(len(batch))
        try:
            async with self._db.transaction() as conn, send_batch.autocommit(conn) as raw:
                keys = [r.key for r in batch]
                snap = await send_batch.snapshot(raw, [r.conversation_id for r in batch], keys)
                planned = send_plan.plan(
                    batch,
                    send_plan.Snapshot(snap.contexts, frozenset(snap.existing)),
                    ids,
                    fast=True,
                )
                advanced: dict[str, int] = {}
                if planned.new:
                    try:
                        advanced = await send_batch.write(
                            raw, _guards(planned, snap.contexts), _fast_rows(planned), now
                        )
                    except send_batch.Conflict as exc:
                        log.info("fast send write rolled back (%s); taking the careful path", exc)
        except ChatError as exc:
            return [(exc, None)] * len(batch), []
        except Exception:
            log.exception("send batch failed")
            return [(unavailable(), None)] * len(batch), []
        return _fast_outcomes(batch, planned, advanced, now)

    async def _careful(self, batch: Sequence[SendRequest]) -> list[Outcome]:
        try:
            return await self._commit(batch)
        except (IntegrityError, DataError):
            log.warning("batch of %d hit a constraint; retrying one by one", len(batch))
            outcomes: list[Outcome] = []
            for request in batch:
                try:
                    outcomes.extend(await self._commit([request]))
                except IntegrityError:
                    outcomes.append((invalid("This client_id was already used."), None))
                except DataError:
                    outcomes.append((invalid("This message cannot be stored."), None))
                except ChatError as exc:
                    outcomes.append((exc, None))
            return outcomes
        except ChatError as exc:
            return [(exc, None)] * len(batch)
        except Exception:
            log.exception("send batch failed")
            return [(unavailable(), None)] * len(batch)

    async def _publish(self, stored: Sequence[_Stored]) -> None:
        """One event per message on its conversation's channel, one inbox
        change on its organisation's and one bell frame: all independent of
        how many staff the organisation has (issue 10). A repeat publishes
        its message event only."""
        items: list[tuple[str, JSON]] = []
        for s in stored:
            conversation_id = s.message["conversation"]
            channel = events.conversation_channel(conversation_id)
            items.extend((channel, events.message_event(line)) for line in s.lines)
            if s.context is not None:
                items.append((channel, events.conversation_changed(s.context)))
            items.append((channel, events.message_event(s.message)))
            if s.repeat:
                continue
            items.append(
                (events.org_channel(s.org_id), events.inbox_changed(conversation_id, s.message))
            )
            if s.message["sender"]["kind"] == Role.STAFF.value:
                items.append(
                    (
                        events.person_channel(Role.CANDIDATE.value, s.candidate_id),
                        bell.frame(s.message, Role.CANDIDATE, s.job_title),
                    )
                )
            else:
                # Every staff member's inbox page hears it on the org channel.
                items.append(
                    (events.org_channel(s.org_id), bell.frame(s.message, Role.STAFF, s.job_title))
                )
        # A task waited on with a bound, never cancelled: a cancel landing in
        # redis-py can be swallowed (Python 3.11), and a publish that ends
        # late still helps. Late or failed, rooms catch up from the database.
        task = asyncio.get_running_loop().create_task(self._publish_now(items))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        await asyncio.wait({task}, timeout=self._publish_timeout)
        if not task.done():
            log.warning(
                "publishing %d events takes over %.2f s; answered senders without it",
                len(items),
                self._publish_timeout,
            )

    async def _publish_now(self, items: Sequence[tuple[str, JSON]]) -> None:
        try:
            await self._events.publish(items)
        except Exception:
            # Stored is stored: subscribers catch up from the database once
            # the broker is back (SPEC section 3.2).
            log.exception("publishing %d events failed", len(items))

    async def _commit(self, batch: Sequence[SendRequest]) -> list[Outcome]:
        async with self._db.transaction() as conn:
            return await _store_batch(conn, batch, self._clock())


def _guards(
    planned: send_plan.Plan[SendContext], snapshot: Mapping[str, SendContext]
) -> list[send_batch.Conversation]:
    """Each conversation's share of the fast write, with the facts of the
    snapshot its guard re-checks."""
    return [
        send_batch.Conversation(
            id=conversation_id,
            n=len(items),
            staff=any(n.row["sender_kind"] == Role.STAFF.value for n in items),
            status=snapshot[conversation_id].status,
            candidate_id=snapshot[conversation_id].candidate_id,
        )
        for conversation_id, items in planned.new.items()
    ]


def _fast_rows(planned: send_plan.Plan[SendContext]) -> list[JSON]:
    return [n.row | {"pos": n.pos} for items in planned.new.values() for n in items]


def _fast_outcomes(
    batch: Sequence[SendRequest],
    planned: send_plan.Plan[SendContext],
    advanced: Mapping[str, int],
    now: datetime,
) -> tuple[list[Outcome | None], list[int]]:
    """Outcomes once the fast write answered; the rest (deferred by the
    plan, client ids stored before, conversations whose guard failed or
    whose write was rolled back) go careful."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    careful = set(planned.deferred) | set(planned.stored_before)
    for i, error in planned.refused.items():
        outcomes[i] = (error, None)
    for conversation_id, items in planned.new.items():
        last_seq = advanced.get(conversation_id)
        if last_seq is None:
            careful.update(n.index for n in items)
            continue
        base = last_seq - len(items)
        ctx = planned.contexts[conversation_id]
        for n in items:
            row = n.row | {"seq": base + n.pos, "created_at": now, "deleted": False}
            message = views.message(row)
            outcomes[n.index] = (SendResult(message, created=True), _stored(message, ctx, None))
    for i, first in sorted(planned.repeats.items()):
        outcomes[i] = _follow(batch, i, first, outcomes[first])
        if outcomes[i] is None:
            careful.add(i)
    return outcomes, sorted(careful)


def _follow(
    batch: Sequence[SendRequest], i: int, first: int, original: Outcome | None
) -> Outcome | None:
    """A client_id sent again within the batch gets its first send's
    outcome (None: that one is not settled by this writer)."""
    if original is None:
        return None
    result = original[0]
    if isinstance(result, ChatError):
        return result, None
    if batch[i].conversation_id != batch[first].conversation_id:
        return _reused_client_id(), None
    return SendResult(result.message, created=False), None


def _message_ids(count: int) -> list[str]:
    """`count` random message ids from one system call."""
    width = MESSAGE_ID_BYTES * 2
    pool = os.urandom(MESSAGE_ID_BYTES * count).hex()
    return [pool[i : i + width] for i in range(0, len(pool), width)]


def _reused_client_id() -> ChatError:
    return invalid("This client_id was already used for another conversation.")


def _stored(
    message: JSON,
    ctx: SendContext,
    context: SendContext | None,
    *,
    repeat: bool = False,
    lines: Sequence[JSON] = (),
) -> _Stored:
    return _Stored(
        message,
        ctx.org_id,
        context,
        job_title=ctx.job_title,
        candidate_id=ctx.candidate_id,
        repeat=repeat,
        lines=list(lines),
    )


async def _store_batch(
    conn: AsyncConnection, batch: Sequence[SendRequest], now: datetime
) -> list[Outcome]:
    """The careful writer: the snapshot read under row locks (in id order),
    attachments claimed, the plan stored in this transaction."""
    known = await contexts.lock_many(conn, [r.conversation_id for r in batch])
    existing = await messages.by_client_keys(conn, [r.key for r in batch])
    files: dict[int, Sequence[JSON] | ChatError] = {}
    seen: set[send_batch.ClientKey] = set()
    for i, request in enumerate(batch):
        if request.key in seen or request.key in existing:
            continue
        seen.add(request.key)
        if request.attachment_ids and request.conversation_id in known:
            claimed = await _claim_attachments(conn, request)
            files[i] = claimed if isinstance(claimed, ChatError) else [dict(f) for f in claimed]
    snapshot = send_plan.Snapshot(known, frozenset(existing), files)
    planned = send_plan.plan(batch, snapshot, _message_ids(len(batch)), fast=False)
    assert not planned.deferred, "the careful writer plans every send"

    outcomes: list[Outcome | None] = [None] * len(batch)
    for i, error in planned.refused.items():
        outcomes[i] = (error, None)
    for i in planned.stored_before:
        request = batch[i]
        ctx = planned.contexts.get(request.conversation_id)
        outcomes[i] = await _repeat(conn, request, existing[request.key], ctx)
    new_rows: list[tuple[int, JSON]] = []
    line_rows: list[JSON] = []  # system lines: stored with the batch, nobody's news
    links: list[tuple[str, list[str]]] = []  # message id, its attachment ids
    advances: list[conversations.Advance] = []
    for conversation_id, items in planned.new.items():
        ctx = planned.contexts[conversation_id]
        reopened = conversation_id in planned.reopened
        lines: list[JSON] = []
        base = ctx.last_seq  # locked: the seqs are final
        if reopened:
            # "… reopened the conversation." takes the seq before the message
            # that reopened it (the first one stored: others were refused).
            base += 1
            line = timeline.reopened_line(conversation_id, base, batch[items[0].index].viewer, now)
            line_rows.append(line)
            lines.append(views.message(line))
        ctx = replace(ctx, last_seq=base + len(items), last_message_at=now)
        for n in items:
            row = n.row | {"seq": base + n.pos, "created_at": now, "deleted": False}
            new_rows.append((n.index, row))
            if n.files:
                links.append((row["id"], [f["id"] for f in n.files]))
            message = views.message(row, n.files)
            # The reopening is announced once, before the first message.
            reopening = reopened and n.pos == 1
            context = ctx if reopening else None
            stored = _stored(message, ctx, context, lines=lines if reopening else [])
            outcomes[n.index] = (SendResult(message, created=True), stored)
        advances.append(
            conversations.Advance(
                conversation_id=conversation_id,
                last_seq=ctx.last_seq,
                at=now,
                has_staff_message=ctx.has_staff_message,
                state=ctx.state,
            )
        )
    for i, first in sorted(planned.repeats.items()):
        followed = _follow(batch, i, first, outcomes[first])
        assert followed is not None
        outcomes[i] = followed

    ordered = [row for _, row in sorted(new_rows, key=lambda r: r[0])]
    await messages.insert_many(conn, [*line_rows, *ordered])
    # After the insert: an attachment's message_id references its message.
    for message_id, attachment_ids in links:
        await messages.attach(conn, message_id, attachment_ids)
    await conversations.advance_many(conn, advances)
    for conversation_id in sorted(planned.reopened):
        ctx = planned.contexts[conversation_id]
        actor = batch[planned.new[conversation_id][0].index].viewer.person()
        await audit.record(conn, ctx.application_id, "conversation.reopened", now, actor)
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


async def _repeat(
    conn: AsyncConnection,
    request: SendRequest,
    original: RowMapping,
    ctx: ConversationContext | None,
) -> Outcome:
    """A retried client_id: the original message, never a second one. It is
    published again (issue 16: its first attempt may have committed on a
    worker that died before publishing; rooms drop a seq they have)."""
    if original["conversation_id"] != request.conversation_id:
        return _reused_client_id(), None
    files = (await messages.attachments_for(conn, [original["id"]])).get(original["id"], [])
    message = views.message(original, files)
    again = None if ctx is None else _stored(message, ctx, None, repeat=True)
    return SendResult(message, created=False), again


async def _claim_attachments(
    conn: AsyncConnection, request: SendRequest
) -> list[RowMapping] | ChatError:
    if not request.attachment_ids:
        return []
    wanted = list(dict.fromkeys(request.attachment_ids))
    rows = await attachment_store.unsent_of(
        conn, wanted, request.viewer.kind.value, request.viewer.id
    )
    if len(rows) != len(wanted):
        return ChatError(ErrorCode.NOT_FOUND, "No such attachment.")
    order = {aid: i for i, aid in enumerate(wanted)}
    return sorted(rows, key=lambda r: order[r["id"]])
