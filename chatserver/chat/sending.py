"""Sending messages with group commit: check → persist → publish.

Every send of a worker goes through one `SendQueue`. Sends that arrive while
a batch is being written wait for the next batch, so under load one write
stores hundreds of messages. Only after the commit are the events published
and the senders acknowledged (SPEC section 3.1).

On PostgreSQL a batch takes the fast path (`chatserver/store/send_batch.py`):
one unlocked read of the batch's conversations, client ids and notification
recipients; the policy applied in Python to that snapshot; then ONE
autocommitted statement that advances each conversation's `last_seq` under a
guard (the facts the policy relied on are unchanged) and inserts the
messages and notification rows. The conversation row locks are therefore
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
links, notifications and audit events in one transaction. If it fails on a
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

from chatserver.chat import access, events, timeline, views
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role, State, send_refusal, sending_reopens
from chatserver.errors import ChatError, ErrorCode, invalid, not_found, unavailable
from chatserver.ops import faults
from chatserver.store import attachments as attachment_store
from chatserver.store import audit, conversations, messages, notifications, send_batch
from chatserver.store.db import Database

log = logging.getLogger(__name__)

JSON = dict[str, Any]
# Notification texts are stored in a column of this width.
NOTE_TEXT_MAX = 500
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
    """A message written in this batch, kept for publishing after commit."""

    message: JSON
    org_id: str
    context: JSON | None  # the conversation, when sending reopened it
    notifications: list[JSON] = field(default_factory=list)
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
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if request is not None and not request.future.done():
                request.future.set_exception(unavailable("The server is shutting down."))

    async def submit(self, request: SendRequest) -> SendResult:
        self._queue.put_nowait(request)
        # Shield: a client that disconnects must not cancel a send that may
        # already be committed; its retry will find the stored message.
        return await asyncio.shield(request.future)

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
        """Publish what was stored, then answer the senders."""
        stored = [s for _, (_, s) in done if s is not None]
        if stored:
            if self._on_stored is not None:
                self._on_stored(len(stored), asyncio.get_running_loop().time() - started)
            faults.reached(faults.Fault.KILL_AFTER_COMMIT)
            await self._publish(stored)
        for request, (result, _) in done:
            if request.future.done():
                continue
            if isinstance(result, ChatError):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

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
                        advanced = await send_batch.write(
                            raw, plan.conversations, plan.rows, plan.notes, now
                        )
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
        items: list[tuple[str, JSON]] = []
        for s in stored:
            conversation_id = s.message["conversation"]
            items.extend(
                (events.conversation_channel(conversation_id), events.message_event(line))
                for line in s.lines
            )
            if s.context is not None:
                items.append(
                    (
                        events.conversation_channel(conversation_id),
                        events.conversation_changed(s.context),
                    )
                )
            items.append(
                (events.conversation_channel(conversation_id), events.message_event(s.message))
            )
            items.append(
                (events.org_channel(s.org_id), events.inbox_changed(conversation_id, s.message))
            )
            if s.notifications:
                # Every recipient of one message gets the same bell entry.
                note_event = events.notification_event(s.notifications[0])
                items.extend(
                    (
                        events.person_channel(note["recipient_kind"], note["recipient_id"]),
                        note_event,
                    )
                    for note in s.notifications
                )
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
        self.notes: list[JSON] = []
        self._notes_of: dict[str, list[JSON]] = {}
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
                self._admit(i, ctx, snap.staff_by_org)
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

    def _admit(self, i: int, ctx: JSON, staff_by_org: dict[str, list[str]]) -> None:
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
        notes = _notes_for(row, ctx, staff_by_org.get(ctx["org_id"], []), self.now)
        self.notes.extend(notes)
        self._notes_of[row["id"]] = notes

    def settle(self, advanced: dict[str, int]) -> tuple[list[Outcome | None], list[int]]:
        """Outcomes of the stored sends; conversations missing from
        `advanced` (guard failed, or the write was rolled back) go careful."""
        for conversation_id, items in self.pending.items():
            last_seq = advanced.get(conversation_id)
            if last_seq is None:
                self.careful.extend(i for i, _ in items)
                continue
            base = last_seq - len(items)
            org_id = self.contexts[conversation_id]["org_id"]
            for i, row in items:
                row["seq"] = base + row["pos"]
                row["created_at"] = self.now
                row["deleted"] = False
                message = views.message(row)
                stored = _Stored(message, org_id, None, self._notes_of[row["id"]])
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


def _notes_for(row: JSON, ctx: JSON, org_staff: Sequence[str], now: datetime) -> list[JSON]:
    """A bell entry for every recipient: the candidate for a staff message,
    every staff member of the organisation for a candidate message."""
    if row["sender_kind"] == Role.STAFF.value:
        recipients = [(Role.CANDIDATE.value, ctx["candidate_id"])]
        text = f"New message from {row['sender_name']} about {ctx['job_title']}"
    else:
        recipients = [(Role.STAFF.value, staff_id) for staff_id in org_staff]
        text = f"New message from {row['sender_name']} ({ctx['job_title']})"
    return [
        {
            "recipient_kind": kind,
            "recipient_id": person_id,
            "kind": "message",
            "conversation_id": row["conversation_id"],
            "message_id": row["id"],
            "text": text[:NOTE_TEXT_MAX],
            "created_at": now,
        }
        for kind, person_id in recipients
    ]


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
    line_rows: list[JSON] = []  # system lines: stored, never notified
    links: list[tuple[str, list[str]]] = []  # message id, its attachment ids
    for request in batch:
        key = request.key
        original = existing.get(key)
        if original is not None or key in in_batch:
            outcomes.append(await _repeat(conn, request, original, in_batch.get(key)))
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
        lines: list[JSON] = []
        if sending_reopens(role, views.facts(ctx)):
            reopened.add(ctx["id"])
            line = timeline.reopened_line(ctx, request.viewer, now)
            line_rows.append(line)
            lines.append(views.message(line))
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
        outcomes.append(
            (
                SendResult(message, created=True),
                _Stored(message, ctx["org_id"], context, lines=lines),
            )
        )
        if files:
            links.append((row["id"], [f["id"] for f in files]))

    await messages.insert_many(conn, [*line_rows, *new_rows])
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
    notes = await _notification_rows(conn, new_rows, touched, now)
    await notifications.add_many(conn, notes)
    stored_by_id = {s.message["id"]: s for _, s in outcomes if s is not None}
    for note in notes:
        stored_by_id[note["message_id"]].notifications.append(note)
    return outcomes


async def _repeat(
    conn: AsyncConnection,
    request: SendRequest,
    original: RowMapping | None,
    earlier: JSON | None,
) -> Outcome:
    """A retried client_id: the original message, never a second one."""
    row: RowMapping | JSON | None = original if original is not None else earlier
    assert row is not None
    if row["conversation_id"] != request.conversation_id:
        return _reused_client_id(), None
    files = (await messages.attachments_for(conn, [row["id"]])).get(row["id"], [])
    return SendResult(views.message(row, files), created=False), None


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


async def _notification_rows(
    conn: AsyncConnection, rows: Sequence[JSON], contexts: dict[str, JSON], now: datetime
) -> list[JSON]:
    candidate_orgs = [
        contexts[row["conversation_id"]]["org_id"]
        for row in rows
        if row["sender_kind"] != Role.STAFF.value
    ]
    staff_by_org = await send_batch.staff_of_orgs(conn, candidate_orgs)
    result: list[JSON] = []
    for row in rows:
        ctx = contexts[row["conversation_id"]]
        result.extend(_notes_for(row, ctx, staff_by_org.get(ctx["org_id"], []), now))
    return result
