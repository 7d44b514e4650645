"""The PostgreSQL fast path of a send batch: one read, then one write.

A prepared statement keeps the generic plan it chose until the next
ANALYZE, and a generic plan does not know how many rows a batch has (it
guesses ten, or a hundred), so every big table is reached in a way that
stays an index probe per row whatever the statistics say:

- the snapshot and the locks take each conversation by its id in a
  LATERAL subquery of its own: one row per probe, which no table size
  makes a sequential scan cheaper for;
- the update joins the rows just locked by a range, `c.id >= l.id AND
  c.id <= l.id`, not by equality: a range can be neither hashed nor
  merged, so the planner cannot scan the table once and hash the batch
  against it, and one index probe per row is its cheapest plan;
- client ids are looked up by a scalar subquery per key.

(Matched against the whole batch at once, `id = ANY(...)`, the planner
assumed ten rows and, at the peer benchmark's 2,500 conversations with
their dead rows, chose to scan `conversations` in every write, about 0.4 ms
each time; which of the statement's steps it scanned in changed with the
statistics. Joined against the parameter's rows, earlier plans scanned all
of `messages` too.)

Both statements run on the pooled connection's psycopg driver connection in
autocommit mode, as fixed SQL text that psycopg prepares on the server once
per connection, so neither SQLAlchemy's compiler nor the server's planner
runs per batch. Parameters go in and the snapshot comes out as one JSON
document each (orjson on our side, PostgreSQL's own parser on the other):
far cheaper than adapting a dozen Python lists element by element.

`snapshot` reads, without locks, what the domain's policy needs (never
the organisation's staff: no part of a send grows with it). `write` then
stores the batch in one statement, so the conversation row locks it takes
are held only while PostgreSQL executes that statement and its commit, never
across a round trip to the (possibly busy) worker:

- `locked` takes the row locks in id order, the order the careful path uses
  too, so two batches can never deadlock, and only of the conversations
  whose guard holds: the facts the policy was applied to (the conversation
  is still open, the application's status and candidate unchanged) and
  none of their sends' client ids stored already (the plan may have been
  made on facts the worker remembered, without reading them:
  `chat/send_facts.py`; a retry then takes the careful path, which returns
  the original). Under READ COMMITTED a batch that waited for another's
  lock re-evaluates the guard on the row as that one committed it;
- `bumped` advances each locked conversation's `last_seq` by its message
  count, on the row as last committed, so seqs stay gapless and unique
  across workers. A conversation whose guard failed is simply missing from
  the result;
- `stored` inserts the messages of the conversations in `bumped`, each with
  seq `last_seq - n + pos`. Nothing per recipient: the bell is derived.

`has_staff_message` needs no guard: it only ever goes from false to true,
and that can only turn a candidate's refusal into a permission.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Json

from chatserver.errors import unavailable
from chatserver.json_types import JSON
from chatserver.store.contexts import SendContext
from chatserver.store.db import Database
from chatserver.store.messages import with_search_body

ClientKey = tuple[str, str, str]  # (sender_kind, sender_id, client_id)
DriverConnection: TypeAlias = psycopg.AsyncConnection[Any]

SNAPSHOT_SQL = """
WITH wanted AS (
    SELECT w.* FROM json_array_elements_text(%(conversations)s::json) AS k(id)
    CROSS JOIN LATERAL (
        SELECT c.id, c.application_id, c.org_id, c.state, c.has_staff_message,
               a.status, a.candidate_id, j.title AS job_title
        FROM conversations c
        JOIN applications a ON a.id = c.application_id
        JOIN jobs j ON j.id = a.job_id
        WHERE c.id = k.id
        OFFSET 0
    ) w
)
SELECT json_build_object(
    'conversations', (SELECT coalesce(json_agg(w), '[]') FROM wanted w),
    'existing', (
        SELECT coalesce(json_agg(k), '[]')
        FROM json_array_elements(%(keys)s::json) AS k
        WHERE (
            SELECT true FROM messages m
            WHERE m.sender_kind = k ->> 0 AND m.sender_id = k ->> 1 AND m.client_id = k ->> 2
        )
    ))::text
"""

WRITE_SQL = """
WITH batch AS (
    SELECT * FROM json_to_recordset(%(conversations)s::json)
        AS b(id text, n int, staff bool, status text, candidate_id text)
),
incoming AS (
    SELECT * FROM json_to_recordset(%(messages)s::json)
        AS m(id text, conversation_id text, pos int, sender_kind text, sender_id text,
             sender_name text, client_id text, body text, html text, search_body text,
             via text)
),
retried AS (
    SELECT k.conversation_id FROM incoming k
    WHERE (
        SELECT true FROM messages m
        WHERE m.sender_kind = k.sender_kind AND m.sender_id = k.sender_id
          AND m.client_id = k.client_id
    )
),
locked AS (
    SELECT l.id, b.n, b.staff FROM (SELECT * FROM batch ORDER BY id) b
    CROSS JOIN LATERAL (
        SELECT c.id FROM conversations c
        JOIN applications a ON a.id = c.application_id
        WHERE c.id = b.id AND c.state = 'open'
          AND a.status = b.status AND a.candidate_id = b.candidate_id
        FOR UPDATE OF c
    ) l
    WHERE b.id NOT IN (SELECT conversation_id FROM retried)
),
bumped AS (
    UPDATE conversations c
    SET last_seq = c.last_seq + l.n,
        last_message_at = %(now)s,
        has_staff_message = c.has_staff_message OR l.staff
    FROM locked l
    -- A range, not =: one index probe per row (see above).
    WHERE c.id >= l.id AND c.id <= l.id
    RETURNING c.id, c.last_seq, l.n
),
stored AS (
    INSERT INTO messages (id, conversation_id, seq, sender_kind, sender_id, sender_name,
                          client_id, body, html, search_body, created_at, deleted, via)
    SELECT m.id, m.conversation_id, u.last_seq - u.n + m.pos, m.sender_kind, m.sender_id,
           m.sender_name, m.client_id, m.body, m.html, m.search_body, %(now)s, false, m.via
    FROM incoming m
    JOIN bumped u ON u.id = m.conversation_id
    RETURNING id
)
SELECT json_object_agg(id, last_seq)::text FROM bumped
"""


class Conflict(Exception):
    """The write was rolled back as a whole (a client_id stored concurrently
    by another worker, a deadlock, a value PostgreSQL refused): nothing of
    it is stored, and its sends must take the careful path."""


@dataclass(frozen=True)
class Snapshot:
    contexts: dict[str, SendContext]  # conversation id -> the facts the send needs
    existing: set[ClientKey]  # client ids already stored


@dataclass(frozen=True)
class Conversation:
    """One conversation's share of a write, and the facts its guard checks."""

    id: str
    n: int
    staff: bool  # a staff member sends in this batch
    status: str
    candidate_id: str


@asynccontextmanager
async def autocommit(db: Database) -> AsyncIterator[DriverConnection]:
    """A pooled psycopg connection in autocommit mode while in use (switched
    off again before the pool gets it back). An outage becomes
    `unavailable`, as `Database.transaction` does for SQLAlchemy's own
    statements."""
    async with db.driver_connection() as raw:
        assert isinstance(raw, psycopg.AsyncConnection)
        try:
            await raw.set_autocommit(True)
            try:
                yield raw
            finally:
                if not raw.broken:
                    await raw.set_autocommit(False)
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
            raise unavailable() from exc


async def snapshot(
    raw: DriverConnection, conversation_ids: Sequence[str], keys: Sequence[ClientKey]
) -> Snapshot:
    params = {"conversations": _json(list(set(conversation_ids))), "keys": _json(keys)}
    cursor = await raw.execute(SNAPSHOT_SQL, params, prepare=True)
    row = await cursor.fetchone()
    assert row is not None
    found = orjson.loads(row[0])
    return Snapshot(
        contexts={c["id"]: SendContext(**c) for c in found["conversations"]},
        existing={(k, s, c) for k, s, c in found["existing"]},
    )


async def write(
    raw: DriverConnection,
    conversations: Sequence[Conversation],
    messages: Sequence[JSON],
    now: datetime,
) -> dict[str, int]:
    """Store the batch in one statement; the new `last_seq` of every
    conversation whose guard held (the others stored nothing).

    `messages` need the keys id, conversation_id, pos (1-based within the
    conversation's share), sender_kind, sender_id, sender_name, client_id,
    body, html (the body is folded for search here) and via (null for the
    app). Other keys are ignored. Nothing is written per recipient: the
    bell is derived (store/notifications.py).
    """
    params = {
        "conversations": _json(conversations),
        "messages": _json([with_search_body(m) for m in messages]),
        "now": now,
    }
    try:
        cursor = await raw.execute(WRITE_SQL, params, prepare=True)
    except (
        psycopg.IntegrityError,
        psycopg.DataError,
        pg_errors.TransactionRollback,
        orjson.JSONEncodeError,
    ) as exc:
        raise Conflict(str(exc)) from exc
    row = await cursor.fetchone()
    assert row is not None
    if row[0] is None:
        return {}
    advanced: dict[str, int] = orjson.loads(row[0])
    return advanced


def _json(value: object) -> Json:
    """A json parameter that orjson encodes straight to bytes."""
    return Json(value, dumps=orjson.dumps)
