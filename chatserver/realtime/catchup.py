"""What a worker's conversation rooms share when they read the database:
one batched query for many rooms' contexts, and a bound on how many rooms
read message pages at once.

A crowd (a worker's clients reconnecting to this one, or every room after a
Redis outage) makes thousands of rooms want their conversation's context at
the same moment. Each asking on its own took one pooled connection per room
and exhausted the pool (issue 10). Here the requests that arrive while one
query runs are answered together by the next, and the page reads that
follow hold one of `PAGE_READERS` slots, so the pool always keeps
connections for sends and subscribes.
"""

from __future__ import annotations

import asyncio
import logging

from chatserver.store import contexts
from chatserver.store.contexts import ConversationContext
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# Rooms reading message pages at once. The pool holds 10 connections by
# default; three leave the rest to sends, subscribes and history.
PAGE_READERS = 3
# Conversations per batched context query.
CONTEXT_CHUNK = 1000


class CatchUp:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.pages = asyncio.Semaphore(PAGE_READERS)
        self._waiting: dict[str, list[asyncio.Future[ConversationContext | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def context(self, conversation_id: str) -> ConversationContext | None:
        """The conversation's context (None if it is gone), read together with
        every other room's that asks meanwhile."""
        future: asyncio.Future[ConversationContext | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.setdefault(conversation_id, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="room contexts")
        return await future

    async def _read(self) -> None:
        while self._waiting:
            # One loop iteration for the rest of a crowd to ask.
            await asyncio.sleep(0)
            batch, self._waiting = self._waiting, {}
            ids = list(batch)
            try:
                rows: dict[str, ConversationContext] = {}
                for start in range(0, len(ids), CONTEXT_CHUNK):
                    async with self.db.transaction() as db:
                        rows.update(
                            await contexts.load_many(db, ids[start : start + CONTEXT_CHUNK])
                        )
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for conversation_id, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(rows.get(conversation_id))
