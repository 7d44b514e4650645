"""Sending messages with group commit: check → persist → publish.

Every send of a worker goes through one `SendQueue`. Sends that arrive while
a batch is being written wait for the next batch, so under load one
transaction stores hundreds of messages: the conversation rows are locked in
id order, client ids checked for retries, the policy applied to the locked
state, seqs assigned, and messages, attachment links, service notifications
and audit events written together. Only after the commit are the events
published and the senders acknowledged (SPEC section 3.1). If a batch fails
on a constraint, its sends are retried one by one, so one bad send never
costs the others.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import access, events, views
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role, State, send_refusal, sending_reopens
from chatserver.errors import ChatError, ErrorCode, invalid, not_found, unavailable
from chatserver.store import attachments as attachment_store
from chatserver.store import audit, conversations, messages, notifications, people
from chatserver.store.db import Database

log = logging.getLogger(__name__)

JSON = dict[str, Any]


@dataclass
class SendRequest:
    viewer: Viewer
    conversation_id: str
    client_id: str
    body: str
    html: str
    attachment_ids: tuple[str, ...] = ()
    future: asyncio.Future[SendResult] = field(default_factory=lambda: _new_future())


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
        self._queue: asyncio.Queue[SendRequest] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_stored = on_stored

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_forever()) for _ in range(self._writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.future.done():
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
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[SendRequest]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcomes = await self._commit(batch)
        except IntegrityError:
            log.warning("batch of %d hit a constraint; retrying one by one", len(batch))
            outcomes = []
            for request in batch:
                try:
                    outcomes.extend(await self._commit([request]))
                except IntegrityError:
                    outcomes.append((invalid("This client_id was already used."), None))
                except ChatError as exc:
                    outcomes.append((exc, None))
        except ChatError as exc:
            outcomes = [(exc, None)] * len(batch)
        except Exception:
            log.exception("send batch failed")
            outcomes = [(unavailable(), None)] * len(batch)
        stored = [s for _, s in outcomes if isinstance(s, _Stored)]
        if stored:
            if self._on_stored is not None:
                self._on_stored(len(stored), loop.time() - started)
            await self._publish(stored)
        for request, (result, _) in zip(batch, outcomes, strict=True):
            if request.future.done():
                continue
            if isinstance(result, ChatError):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

    async def _publish(self, stored: Sequence[_Stored]) -> None:
        items: list[tuple[str, JSON]] = []
        for s in stored:
            conversation_id = s.message["conversation"]
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
            items.extend(
                (
                    events.person_channel(note["recipient_kind"], note["recipient_id"]),
                    events.notification_event(note),
                )
                for note in s.notifications
            )
        try:
            await self._events.publish(items)
        except Exception:
            # Stored is stored: subscribers catch up from the database once
            # the broker is back (SPEC section 3.2).
            log.exception("publishing %d events failed", len(items))

    async def _commit(
        self, batch: Sequence[SendRequest]
    ) -> list[tuple[SendResult | ChatError, _Stored | None]]:
        async with self._db.transaction() as conn:
            return await _store_batch(conn, batch, self._clock())


async def _store_batch(
    conn: AsyncConnection, batch: Sequence[SendRequest], now: datetime
) -> list[tuple[SendResult | ChatError, _Stored | None]]:
    contexts = {
        cid: dict(row)
        for cid, row in (
            await conversations.contexts_for_update(conn, [r.conversation_id for r in batch])
        ).items()
    }
    existing = await messages.by_client_keys(
        conn, [(r.viewer.kind.value, r.viewer.id, r.client_id) for r in batch]
    )
    outcomes: list[tuple[SendResult | ChatError, _Stored | None]] = []
    new_rows: list[JSON] = []
    in_batch: dict[tuple[str, str, str], JSON] = {}
    touched: dict[str, JSON] = {}
    reopened: set[str] = set()
    for request in batch:
        key = (request.viewer.kind.value, request.viewer.id, request.client_id)
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
        if sending_reopens(role, views.facts(ctx)):
            reopened.add(ctx["id"])
        ctx["last_seq"] += 1
        ctx["state"] = State.OPEN.value
        ctx["has_staff_message"] = ctx["has_staff_message"] or role is Role.STAFF
        ctx["last_message_at"] = now
        touched[ctx["id"]] = ctx
        row: JSON = {
            "id": secrets.token_hex(16),
            "conversation_id": ctx["id"],
            "seq": ctx["last_seq"],
            "sender_kind": role.value,
            "sender_id": request.viewer.id,
            "sender_name": request.viewer.name,
            "client_id": request.client_id,
            "body": request.body,
            "html": request.html,
            "created_at": now,
            "deleted": False,
        }
        new_rows.append(row)
        in_batch[key] = row
        message = views.message(row, files)
        context = dict(ctx) if ctx["id"] in reopened else None
        outcomes.append(
            (SendResult(message, created=True), _Stored(message, ctx["org_id"], context))
        )
        if files:
            await messages.attach(conn, row["id"], [f["id"] for f in files])

    await messages.insert_many(conn, new_rows)
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
) -> tuple[SendResult | ChatError, _Stored | None]:
    """A retried client_id: the original message, never a second one."""
    row: RowMapping | JSON | None = original if original is not None else earlier
    assert row is not None
    if row["conversation_id"] != request.conversation_id:
        return invalid("This client_id was already used for another conversation."), None
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
    """A bell entry for every recipient: the candidate for a staff message,
    every staff member of the organisation for a candidate message."""
    staff_by_org: dict[str, list[str]] = {}
    result: list[JSON] = []
    for row in rows:
        ctx = contexts[row["conversation_id"]]
        if row["sender_kind"] == Role.STAFF.value:
            recipients = [(Role.CANDIDATE.value, ctx["candidate_id"])]
            text = f"New message from {row['sender_name']} about {ctx['job_title']}"
        else:
            org_id = ctx["org_id"]
            if org_id not in staff_by_org:
                staff_by_org[org_id] = [s["id"] for s in await people.org_staff(conn, org_id)]
            recipients = [(Role.STAFF.value, sid) for sid in staff_by_org[org_id]]
            text = f"New message from {row['sender_name']} ({ctx['job_title']})"
        result.extend(
            {
                "recipient_kind": kind,
                "recipient_id": person_id,
                "kind": "message",
                "conversation_id": row["conversation_id"],
                "message_id": row["id"],
                "text": text[:500],
                "created_at": now,
            }
            for kind, person_id in recipients
        )
    return result
