"""What a subscribe sends first (SPEC section 5), for many subscribes at
once (docs/performance.md, "The reconnect storm"): the openings that arrive
while one batch of them is in flight, or in the same event-loop turn, are
read by one transaction, and each caller gets exactly what
`queries.opening` would have answered it (or raised).

When a worker dies its sockets reconnect to the survivor and each one
subscribes again; each opening was a transaction of its own (a pool
checkout, BEGIN, a context query built anew, the history, the
attachments, COMMIT): 29 % of the survivor's samples in the storm's
profile. A batch reads the contexts with one `IN` query, each waiter's
history page as before (same transaction), and the attachments of every
page with one more query.

How batches are formed, and why nothing is cached: `chat/batches.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import RowMapping

from chatserver.chat import access, ids, views
from chatserver.chat.batches import Batches
from chatserver.chat.identity import Viewer
from chatserver.errors import ChatError, not_found
from chatserver.json_types import JSON
from chatserver.store import contexts, messages
from chatserver.store.contexts import ConversationContext
from chatserver.store.db import Database

# Openings in one transaction: bounds the IN lists and how long one batch
# holds its connection (each opening still reads its own history page);
# more waiting openings go in the next batch, right after.
MAX_BATCH = 100
# Message ids in one attachments query: a full batch may show 100 pages of
# `views.HISTORY_MAX` messages, more than SQLite's bound parameters allow.
IDS_PER_QUERY = 5000

Opening = tuple[ConversationContext, list[JSON]]


@dataclass(frozen=True, slots=True)
class Ask:
    """One subscribe's question: this conversation, for this viewer, after this seq."""

    viewer: Viewer
    conversation_id: str
    after: int


class OpeningBatches(Batches[Ask, Opening]):
    """The batcher of one worker's subscribe openings (held by `Chat`)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        super().__init__("subscribe openings", max_batch)
        self._db = db

    async def opening(self, viewer: Viewer, conversation_id: str, after: int) -> Opening:
        """`queries.opening`'s answer, from the next batch: the context as
        this viewer may see it and the first history page after `after`;
        `not_found` for a malformed id (at once), a missing conversation
        or one out of the viewer's reach."""
        ids.our_id(conversation_id)
        # Past every possible seq keeps nothing (as `queries.history`): a
        # larger parameter would fail the whole batch's transaction on
        # PostgreSQL, not only this opening.
        return await self.ask(Ask(viewer, conversation_id, min(after, messages.SEQ_MAX)))

    async def read(self, asks: Sequence[Ask]) -> list[Opening | ChatError]:
        seen: dict[int, tuple[ConversationContext, list[RowMapping]]] = {}
        async with self._db.transaction() as conn:
            found = await contexts.load_many(conn, [a.conversation_id for a in asks])
            for index, ask in enumerate(asks):
                ctx = found.get(ask.conversation_id)
                if ctx is None or not access.may_see(ask.viewer, ctx):
                    continue
                rows = await messages.history(
                    conn,
                    ask.conversation_id,
                    ask.viewer.kind.value,
                    ask.viewer.id,
                    after=ask.after,
                    limit=views.HISTORY_MAX,
                )
                seen[index] = (ctx, rows)
            # Each message once, though many viewers may open its conversation.
            shown = list(
                dict.fromkeys(i for _, rows in seen.values() for i in views.shown_ids(rows))
            )
            files: dict[str, list[RowMapping]] = {}
            for start in range(0, len(shown), IDS_PER_QUERY):
                files.update(
                    await messages.attachments_for(conn, shown[start : start + IDS_PER_QUERY])
                )
        # Missing and out of reach are one answer (`access.conversation_for`).
        return [
            (seen[i][0], views.history_page(seen[i][1], files)) if i in seen else not_found()
            for i in range(len(asks))
        ]
