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

On PostgreSQL a batch takes the fast path (`chatserver/store/send_batch.py`):
one unlocked read of the batch's conversations and client ids; the policy
applied in Python to that snapshot; then ONE
autocommitted statement that advances each conversation's `last_seq` under a
guard (the facts the policy relied on are unchanged) and inserts the
messages. The conversation row locks are therefore
held for PostgreSQL's execution of one statement, not across round trips that
each wait for a busy event loop, which is what queued batches of two workers
behind each other (docs/performance.md).

Anything unusual takes the careful path, the locked transaction below that
is also the whole SQLite path: a client id already stored (the retry gets
the original, with its attachments), attachments, a staff message that
reopens an ended conversation, a conversation whose guard failed (its state
or status changed after the read), and a write rolled back as a whole (a
client id stored concurrently by another worker, a deadlock). A
conversation's sends always go the same way within a batch, so their order
and the first-message rule are kept. A refusal decided on the snapshot is
final: it was the policy's answer at a moment after the send arrived.

The careful path locks the rows in id order, checks client ids, applies the
policy to the locked state, assigns seqs and writes messages, attachment
links and audit events in one transaction. If it fails on a
constraint, its sends are retried one by one, so one bad send never costs
the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import access, bell, events, views
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role, State, send_refusal, sending_reopens
from chatserver.errors import ChatError, ErrorCode, invalid, not_found, unavailable
from chatserver.store import attachments as attachment_store
from chatserver.store import audit, conversations, messages, send_batch
from chatserver.store.db import Database

log = logging.getLogger(__name__)

JSON = dict[str, Any]
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
    context: JSON | None  # the conversation, when sending reopened it
    job_title: str = ""
    candidate_id: str = ""
    repeat: bool = False


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
            # Its outcome, when it comes, is nobody's to read.
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
        try:
            async with self._db.transaction() as conn, send_batch.autocommit(conn) as raw:
                keys = [r.key for r in batch]
                snap = await send_batch.snapshot(raw, [r.conversation_id for r in batch], keys)
                plan = _FastPlan(batch, keys, snap, now)
                advanced: dict[str, int] = {}
                if plan.conversations:
                    try:
                        advanced = await send_batch.write(raw, plan.conversations, plan.rows, now)
                    except send_batch.Conflict as exc:
                        log.info("fast send write rolled back (%s); taking the careful path", exc)
        except ChatError as exc:
            return [(exc, None)] * len(batch), []
        except Exception:
            log.exception("send batch failed")
            return [(unavailable(), None)] * len(batch), []
        return plan.settle(advanced)

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


class _FastPlan:
    """One batch on the fast path: the policy applied to the snapshot, the
    rows to write, and the outcomes once the write has answered."""

    def __init__(
        self,
        batch: Sequence[SendRequest],
        keys: Sequence[send_batch.ClientKey],
        snap: send_batch.Snapshot,
        now: datetime,
    ) -> None:
        self.batch = batch
        self.now = now
        self._ids = _message_ids(len(batch))
        self.outcomes: list[Outcome | None] = [None] * len(batch)
        self.careful: list[int] = []
        self.followers: list[tuple[int, int]] = []  # (retry in this batch, its first send)
        self.pending: dict[str, list[tuple[int, JSON]]] = {}  # conversation -> (index, row)
        self.contexts = snap.contexts
        self.conversations: list[send_batch.Conversation] = []
        self.rows: list[JSON] = []
        candidates = self._screen(keys, snap)
        careful_conversations = {
            ctx["id"]
            for i, ctx in candidates
            if batch[i].attachment_ids or sending_reopens(batch[i].viewer.kind, views.facts(ctx))
        }
        for i, ctx in candidates:
            if ctx["id"] in careful_conversations:
                self.careful.append(i)
            else:
                self._admit(i, ctx)
        for conversation_id, items in self.pending.items():
            ctx = self.contexts[conversation_id]
            self.conversations.append(
                send_batch.Conversation(
                    id=conversation_id,
                    n=len(items),
                    staff=any(row["sender_kind"] == Role.STAFF.value for _, row in items),
                    status=ctx["status"],
                    candidate_id=ctx["candidate_id"],
                )
            )

    def _screen(
        self, keys: Sequence[send_batch.ClientKey], snap: send_batch.Snapshot
    ) -> list[tuple[int, JSON]]:
        """Settle what needs no write; the rest as (index, context), in order."""
        first: dict[send_batch.ClientKey, int] = {}
        candidates: list[tuple[int, JSON]] = []
        for i, (request, key) in enumerate(zip(self.batch, keys, strict=True)):
            if key in first:
                self.followers.append((i, first[key]))
                continue
            first[key] = i
            if key in snap.existing:
                self.careful.append(i)
                continue
            ctx = self.contexts.get(request.conversation_id)
            if ctx is None or not access.may_see(request.viewer, ctx):
                self.outcomes[i] = (not_found(), None)
                continue
            candidates.append((i, ctx))
        return candidates

    def _admit(self, i: int, ctx: JSON) -> None:
        """Apply the policy to the snapshot as advanced by the batch's earlier
        sends (a staff message lets a later candidate message through)."""
        request = self.batch[i]
        role = request.viewer.kind
        refusal = send_refusal(role, views.facts(ctx))
        if refusal is not None:
            self.outcomes[i] = (refusal.error(), None)
            return
        if role is Role.STAFF:
            ctx["has_staff_message"] = True
        items = self.pending.setdefault(ctx["id"], [])
        row = _message_row(request, self._ids[i], ctx["id"])
        row["pos"] = len(items) + 1
        items.append((i, row))
        self.rows.append(row)

    def settle(self, advanced: dict[str, int]) -> tuple[list[Outcome | None], list[int]]:
        """Outcomes of the stored sends; conversations missing from
        `advanced` (guard failed, or the write was rolled back) go careful."""
        for conversation_id, items in self.pending.items():
            last_seq = advanced.get(conversation_id)
            if last_seq is None:
                self.careful.extend(i for i, _ in items)
                continue
            base = last_seq - len(items)
            ctx = self.contexts[conversation_id]
            for i, row in items:
                row["seq"] = base + row["pos"]
                row["created_at"] = self.now
                row["deleted"] = False
                message = views.message(row)
                stored = _stored(message, ctx, None)
                self.outcomes[i] = (SendResult(message, created=True), stored)
        for i, first in self.followers:
            original = self.outcomes[first]
            if original is None or not isinstance(original[0], SendResult):
                self.careful.append(i)
            elif self.batch[i].conversation_id != self.batch[first].conversation_id:
                self.outcomes[i] = (_reused_client_id(), None)
            else:
                self.outcomes[i] = (SendResult(original[0].message, created=False), None)
        return self.outcomes, sorted(self.careful)


def _message_row(request: SendRequest, message_id: str, conversation_id: str) -> JSON:
    """The columns both write paths store; each adds how the seq is set."""
    return {
        "id": message_id,
        "conversation_id": conversation_id,
        "sender_kind": request.viewer.kind.value,
        "sender_id": request.viewer.id,
        "sender_name": request.viewer.name,
        "client_id": request.client_id,
        "body": request.body,
        "html": request.html,
        "via": request.via,
    }


def _message_ids(count: int) -> list[str]:
    """`count` random message ids from one system call."""
    width = MESSAGE_ID_BYTES * 2
    pool = os.urandom(MESSAGE_ID_BYTES * count).hex()
    return [pool[i : i + width] for i in range(0, len(pool), width)]


def _reused_client_id() -> ChatError:
    return invalid("This client_id was already used for another conversation.")


def _stored(message: JSON, ctx: JSON, context: JSON | None, *, repeat: bool = False) -> _Stored:
    return _Stored(
        message,
        ctx["org_id"],
        context,
        job_title=ctx["job_title"],
        candidate_id=ctx["candidate_id"],
        repeat=repeat,
    )


async def _store_batch(
    conn: AsyncConnection, batch: Sequence[SendRequest], now: datetime
) -> list[Outcome]:
    contexts = {
        cid: dict(row)
        for cid, row in (
            await conversations.contexts_for_update(conn, [r.conversation_id for r in batch])
        ).items()
    }
    existing = await messages.by_client_keys(conn, [r.key for r in batch])
    outcomes: list[Outcome] = []
    new_rows: list[JSON] = []
    in_batch: dict[send_batch.ClientKey, JSON] = {}
    touched: dict[str, JSON] = {}
    reopened: set[str] = set()
    links: list[tuple[str, list[str]]] = []  # message id, its attachment ids
    for request in batch:
        key = request.key
        original = existing.get(key)
        if original is not None or key in in_batch:
            ctx = contexts.get(request.conversation_id)
            outcomes.append(await _repeat(conn, request, original, in_batch.get(key), ctx))
            continue
        ctx = contexts.get(request.conversation_id)
        if ctx is None or not access.may_see(request.viewer, ctx):
            outcomes.append((not_found(), None))
            continue
        role = request.viewer.kind
        refusal = send_refusal(role, views.facts(ctx))
        if refusal is not None:
            outcomes.append((refusal.error(), None))
            continue
        files = await _claim_attachments(conn, request)
        if isinstance(files, ChatError):
            outcomes.append((files, None))
            continue
        if sending_reopens(role, views.facts(ctx)):
            reopened.add(ctx["id"])
        ctx["last_seq"] += 1
        ctx["state"] = State.OPEN.value
        ctx["has_staff_message"] = ctx["has_staff_message"] or role is Role.STAFF
        ctx["last_message_at"] = now
        touched[ctx["id"]] = ctx
        row = _message_row(request, secrets.token_hex(MESSAGE_ID_BYTES), ctx["id"])
        row.update(seq=ctx["last_seq"], created_at=now, deleted=False)
        new_rows.append(row)
        in_batch[key] = row
        message = views.message(row, files)
        context = dict(ctx) if ctx["id"] in reopened else None
        outcomes.append((SendResult(message, created=True), _stored(message, ctx, context)))
        if files:
            links.append((row["id"], [f["id"] for f in files]))

    await messages.insert_many(conn, new_rows)
    # After the insert: an attachment's message_id references its message.
    for message_id, attachment_ids in links:
        await messages.attach(conn, message_id, attachment_ids)
    await conversations.advance_many(
        conn,
        [
            conversations.Advance(
                conversation_id=ctx["id"],
                last_seq=ctx["last_seq"],
                at=now,
                has_staff_message=bool(ctx["has_staff_message"]),
                state=ctx["state"],
            )
            for ctx in touched.values()
        ],
    )
    for conversation_id in reopened:
        ctx = touched[conversation_id]
        actor = next(r for r in batch if r.conversation_id == conversation_id).viewer.person()
        await audit.record(conn, ctx["application_id"], "conversation.reopened", now, actor)
    return outcomes


async def _repeat(
    conn: AsyncConnection,
    request: SendRequest,
    original: RowMapping | None,
    earlier: JSON | None,
    ctx: JSON | None,
) -> Outcome:
    """A retried client_id: the original message, never a second one. One
    stored before this batch is published again (issue 16: its first
    attempt may have committed on a worker that died before publishing)."""
    row: RowMapping | JSON | None = original if original is not None else earlier
    assert row is not None
    if row["conversation_id"] != request.conversation_id:
        return _reused_client_id(), None
    files = (await messages.attachments_for(conn, [row["id"]])).get(row["id"], [])
    message = views.message(row, files)
    again = None if original is None or ctx is None else _stored(message, ctx, None, repeat=True)
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
