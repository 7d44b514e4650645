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

The design is `chat/viewers.py`'s: nothing is cached (an opening asked
while a batch is in flight waits for the next one, so it sees what was
committed before it was asked), one batch in flight per worker, at most
`MAX_BATCH` openings a batch, what the batch's transaction raises every
caller of that batch raises, and a caller that stopped waiting is skipped.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from sqlalchemy.engine import RowMapping

from chatserver.chat import access, ids, views
from chatserver.chat.identity import Viewer
from chatserver.errors import not_found, unavailable
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


@dataclass(slots=True)
class _Waiter:
    viewer: Viewer
    conversation_id: str
    after: int
    answer: asyncio.Future[Opening]


class OpeningBatches:
    """The batcher of one worker's subscribe openings (held by `Chat`)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max_batch = max_batch
        self._waiting: collections.deque[_Waiter] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    async def opening(self, viewer: Viewer, conversation_id: str, after: int) -> Opening:
        """`queries.opening`'s answer, from the next batch: the context as
        this viewer may see it and the first history page after `after`;
        `not_found` for a malformed id (at once), a missing conversation
        or one out of the viewer's reach."""
        ids.our_id(conversation_id)
        # Past every possible seq keeps nothing (as `queries.history`): a
        # larger parameter would fail the whole batch's transaction on
        # PostgreSQL, not only this opening.
        after = min(after, messages.SEQ_MAX)
        answer: asyncio.Future[Opening] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiter(viewer, conversation_id, after, answer))
        if self._runner is None:
            # Started on the loop's next turn: every opening of this turn joins.
            self._runner = asyncio.create_task(self._run(), name="subscribe openings")
        # A cancelled caller cancels only its own future; the batch skips it.
        return await answer

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch: list[_Waiter] = []
                while self._waiting and len(batch) < self._max_batch:
                    waiter = self._waiting.popleft()
                    if not waiter.answer.done():
                        batch.append(waiter)
                if batch:
                    await self._answer(batch)
        finally:
            self._runner = None
            # Stopped mid-batch: nobody is left waiting for an answer.
            while self._waiting:
                _settle(self._waiting.popleft().answer, unavailable())

    async def _answer(self, batch: list[_Waiter]) -> None:
        seen: list[tuple[_Waiter, ConversationContext, list[RowMapping]]] = []
        try:
            async with self._db.transaction() as conn:
                found = await contexts.load_many(conn, [w.conversation_id for w in batch])
                for waiter in batch:
                    ctx = found.get(waiter.conversation_id)
                    if ctx is None or not access.may_see(waiter.viewer, ctx):
                        continue
                    if waiter.answer.done():
                        continue  # stopped waiting: its page is read for nobody
                    rows = await messages.history(
                        conn,
                        waiter.conversation_id,
                        waiter.viewer.kind.value,
                        waiter.viewer.id,
                        after=waiter.after,
                        limit=views.HISTORY_MAX,
                    )
                    seen.append((waiter, ctx, rows))
                # Each message once, though many viewers may open its conversation.
                shown = list(dict.fromkeys(i for _, _, rows in seen for i in views.shown_ids(rows)))
                files: dict[str, list[RowMapping]] = {}
                for start in range(0, len(shown), IDS_PER_QUERY):
                    chunk = shown[start : start + IDS_PER_QUERY]
                    files.update(await messages.attachments_for(conn, chunk))
        except Exception as exc:
            # What a single opening's transaction would have raised.
            for waiter in batch:
                _settle(waiter.answer, exc)
            return
        except BaseException:
            for waiter in batch:
                _settle(waiter.answer, unavailable())
            raise
        pages = {id(w): (ctx, views.history_page(rows, files)) for w, ctx, rows in seen}
        for waiter in batch:
            page = pages.get(id(waiter))
            # Missing and out of reach are one answer (`access.conversation_for`).
            _settle(waiter.answer, not_found() if page is None else page)

    @property
    def queued(self) -> int:
        """Openings waiting for the next batch (not yet asked of the database)."""
        return sum(not w.answer.done() for w in self._waiting)

    async def stop(self) -> None:
        """Cancel the batch in flight; its callers get `unavailable`."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.wait({runner})


def _settle(answer: asyncio.Future[Opening], result: Opening | BaseException) -> None:
    """Hand one caller its answer, unless it stopped waiting."""
    if answer.done():
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)
