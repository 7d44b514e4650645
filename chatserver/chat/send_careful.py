"""Persisting a send batch, the careful writer: the whole SQLite path, and
on PostgreSQL what the fast writer (`chat/send_fast.py`) cannot store: a
client id already stored (the retry gets the original, with its
attachments), attachments, a staff message that reopens an ended
conversation, a conversation whose guard failed, and a write rolled back as
a whole (a client id stored concurrently by another worker, a deadlock).

It reads the snapshot under row locks in id order, claims attachments,
plans (`chat/send_plan.py`), assigns seqs from the locked `last_seq` and
writes messages, attachment links and audit events in one transaction. If
it fails on a constraint, its sends are retried one by one, so one bad send
never costs the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import send_plan, timeline, views
from chatserver.chat.send_request import (
    Outcome,
    SendRequest,
    SendResult,
    Stored,
    follow,
    message_ids,
    reused_client_id,
)
from chatserver.errors import ChatError, ErrorCode, invalid, unavailable
from chatserver.json_types import JSON
from chatserver.store import attachments as attachment_store
from chatserver.store import audit, contexts, conversations, messages, send_batch
from chatserver.store.contexts import ConversationContext
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# One sentence for every file a send may not take (another person's, sent
# already, expired unsent, never uploaded): which it was is not the
# sender's to learn, and what to do is the same.
GONE_ATTACHMENT = (
    "This file is no longer available (sent already, or expired before it was sent). "
    "Attach it again."
)


async def write(
    db: Database,
    batch: Sequence[SendRequest],
    clock: Callable[[], datetime],
    limited: Mapping[int, ChatError],
) -> list[Outcome]:
    """Every request's outcome, in batch order. `limited`: the sends over
    their rate limit (`Limits.take_sends`)."""
    try:
        return await _commit(db, batch, clock, limited)
    except (IntegrityError, DataError):
        log.warning("batch of %d hit a constraint; retrying one by one", len(batch))
        outcomes: list[Outcome] = []
        for i, request in enumerate(batch):
            if i in limited:
                outcomes.append((limited[i], None))
                continue
            try:
                outcomes.extend(await _commit(db, [request], clock, {}))
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


async def _commit(
    db: Database,
    batch: Sequence[SendRequest],
    clock: Callable[[], datetime],
    limited: Mapping[int, ChatError],
) -> list[Outcome]:
    async with db.transaction() as conn:
        return await _store_batch(conn, batch, clock(), limited)


async def _store_batch(
    conn: AsyncConnection,
    batch: Sequence[SendRequest],
    now: datetime,
    limited: Mapping[int, ChatError],
) -> list[Outcome]:
    """The snapshot read under row locks (in id order), attachments
    claimed, the plan stored in this transaction."""
    known = await contexts.lock_many(conn, [r.conversation_id for r in batch])
    existing = await messages.by_client_keys(conn, [r.key for r in batch])
    files: dict[int, Sequence[JSON] | ChatError] = {}
    seen: set[send_batch.ClientKey] = set()
    # Files claimed by an earlier send of this batch: a file goes with one
    # message, even when two sends of it arrive together.
    taken: set[str] = set()
    for i, request in enumerate(batch):
        if i in limited or request.key in seen or request.key in existing:
            continue
        seen.add(request.key)
        if request.attachment_ids and request.conversation_id in known:
            claimed = await _claim_attachments(conn, request, taken)
            files[i] = claimed if isinstance(claimed, ChatError) else [dict(f) for f in claimed]
    snapshot = send_plan.Snapshot(known, frozenset(existing), files, limited)
    planned = send_plan.plan(batch, snapshot, message_ids(len(batch)), fast=False)
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
            changed = reopening or n.index in planned.lets_candidate_reply
            stored = Stored(message, ctx, changed, lines=lines if reopening else [])
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
        followed = follow(batch, i, first, outcomes[first])
        assert followed is not None
        outcomes[i] = followed

    ordered = [row for _, row in sorted(new_rows, key=lambda r: r[0])]
    await messages.insert_many(conn, [*line_rows, *ordered])
    # After the insert: an attachment's message_id references its message.
    # Each file keeps its place in the send (the order the sender chose).
    await messages.attach(conn, links)
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
        return reused_client_id(), None
    files = (await messages.attachments_for(conn, [original["id"]])).get(original["id"], [])
    message = views.message(original, files)
    again = None if ctx is None else Stored(message, ctx, repeat=True)
    return SendResult(message, created=False), again


async def _claim_attachments(
    conn: AsyncConnection, request: SendRequest, taken: set[str]
) -> list[RowMapping] | ChatError:
    """The send's files, if all are the sender's and not sent (by another
    transaction, or by a send of this batch: `taken`, which gains them)."""
    if not request.attachment_ids:
        return []
    wanted = list(dict.fromkeys(request.attachment_ids))
    rows = await attachment_store.unsent_of(
        conn, wanted, request.viewer.kind.value, request.viewer.id
    )
    if len(rows) != len(wanted) or not taken.isdisjoint(wanted):
        return ChatError(ErrorCode.NOT_FOUND, GONE_ATTACHMENT)
    taken.update(wanted)
    order = {aid: i for i, aid in enumerate(wanted)}
    return sorted(rows, key=lambda r: order[r["id"]])
