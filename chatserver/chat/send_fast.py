"""Persisting a send batch, PostgreSQL's fast writer
(`chatserver/store/send_batch.py`): one unlocked read, the plan, then ONE
autocommitted statement that advances each conversation's `last_seq` under
a guard that re-checks the snapshot's facts (still open, status and
candidate unchanged, no client id stored) and inserts the messages. The
read is skipped when the worker remembers the facts of every conversation
of the batch and they let every send through (`chat/send_facts.py`).

The conversation row locks are therefore held for PostgreSQL's execution
of one statement, not across round trips that each wait for a busy event
loop, which is what queued batches of two workers behind each other
(docs/performance.md). What this writer cannot store goes to the careful
one (`chat/send_careful.py`): it answers with those sends' indices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from chatserver.chat import send_plan, views
from chatserver.chat.policy import Role
from chatserver.chat.send_facts import SendFacts
from chatserver.chat.send_request import (
    Outcome,
    SendRequest,
    SendResult,
    Stored,
    follow,
    message_ids,
)
from chatserver.errors import ChatError, unavailable
from chatserver.json_types import JSON
from chatserver.store import send_batch
from chatserver.store.contexts import SendContext
from chatserver.store.db import Database

log = logging.getLogger(__name__)


async def write(
    db: Database,
    batch: Sequence[SendRequest],
    now: datetime,
    limited: asyncio.Future[dict[int, ChatError]],
    facts: SendFacts,
) -> tuple[list[Outcome | None], list[int]]:
    """Each request's outcome, or None for the indices (second list,
    ascending) that must take the careful path. `limited`: the sends over
    their rate limit, awaited once the snapshot is read (the limits' round
    trip to Redis runs meanwhile)."""
    ids = message_ids(len(batch))
    try:
        async with send_batch.autocommit(db) as raw:
            planned = await _plan(raw, batch, ids, limited, facts)
            advanced: dict[str, int] = {}
            if planned.new:
                try:
                    advanced = await send_batch.write(raw, _guards(planned), _rows(planned), now)
                except send_batch.Conflict as exc:
                    log.info("fast send write rolled back (%s); taking the careful path", exc)
    except ChatError as exc:
        return [(exc, None)] * len(batch), []
    except Exception:
        log.exception("send batch failed")
        return [(unavailable(), None)] * len(batch), []
    outcomes, careful = _outcomes(batch, planned, advanced, now)
    facts.update(planned.contexts[conversation_id] for conversation_id in advanced)
    # Their facts are read again: the careful path may change them, and a
    # failed guard means they changed.
    facts.forget({batch[i].conversation_id for i in careful})
    return outcomes, careful


async def _plan(
    raw: send_batch.DriverConnection,
    batch: Sequence[SendRequest],
    ids: Sequence[str],
    limited: asyncio.Future[dict[int, ChatError]],
    facts: SendFacts,
) -> send_plan.Plan[SendContext]:
    """The batch planned on the facts the worker remembers, if it knows
    every conversation's and they let every send through; else on a
    snapshot read now, while the rate limits are read too."""
    remembered = facts.fresh({r.conversation_id for r in batch})
    if remembered is not None:
        over = await limited
        planned = send_plan.plan(
            batch, send_plan.Snapshot(remembered, limited=over), ids, fast=True
        )
        if planned.refused.keys() <= over.keys() and not planned.deferred:
            return planned
    snap = await send_batch.snapshot(
        raw, [r.conversation_id for r in batch], [r.key for r in batch]
    )
    facts.remember(snap.contexts.values())
    snapshot = send_plan.Snapshot(snap.contexts, frozenset(snap.existing), limited=await limited)
    return send_plan.plan(batch, snapshot, ids, fast=True)


def _guards(planned: send_plan.Plan[SendContext]) -> list[send_batch.Conversation]:
    """Each conversation's share of the fast write, with the facts its
    guard re-checks (the plan changes a context's state and
    `has_staff_message`, never its status or candidate)."""
    return [
        send_batch.Conversation(
            id=conversation_id,
            n=len(items),
            staff=any(n.row["sender_kind"] == Role.STAFF.value for n in items),
            status=planned.contexts[conversation_id].status,
            candidate_id=planned.contexts[conversation_id].candidate_id,
        )
        for conversation_id, items in planned.new.items()
    ]


def _rows(planned: send_plan.Plan[SendContext]) -> list[JSON]:
    return [n.row | {"pos": n.pos} for items in planned.new.values() for n in items]


def _outcomes(
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
            changed = n.index in planned.lets_candidate_reply
            outcomes[n.index] = (SendResult(message, created=True), Stored(message, ctx, changed))
    for i, first in sorted(planned.repeats.items()):
        outcomes[i] = follow(batch, i, first, outcomes[first])
        if outcomes[i] is None:
            careful.add(i)
    return outcomes, sorted(careful)
