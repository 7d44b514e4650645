"""The tail check: how a committed message whose publish was lost still
reaches every live subscriber.

A worker can die between a commit and its publish, or a publish can fail;
nobody would hear of those messages until the next one. So every interval,
one query compares each local conversation room with the database's newest
seq, and a room still behind a seq that the previous check already saw
catches up, as after a Resync (docs/realtime.md, "Under faults").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from chatserver.realtime.conversation_room import ConversationRoom
from chatserver.store import conversations
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# Every this often, one query compares each local conversation room with
# the database's newest seq. A room still behind a seq that the previous
# check already saw missed that publish (its worker died between commit and
# publish, or the publish failed) and catches up: a committed message
# reaches every live subscriber within about two intervals.
TAIL_CHECK_SECONDS = 0.75
# Conversations per tail-check query.
TAIL_CHECK_CHUNK = 1000


class TailCheck:
    """The periodic check of one worker's conversation rooms."""

    def __init__(self, db: Database, rooms: Callable[[], Mapping[str, ConversationRoom]]) -> None:
        self._db = db
        self._rooms = rooms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._check_forever(), name="tails")

    async def stop(self, grace: float) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=grace)
            self._task = None

    async def _check_forever(self) -> None:
        behind: dict[str, int] = {}
        while True:
            await asyncio.sleep(TAIL_CHECK_SECONDS)
            try:
                behind = await self.check(behind)
            except Exception as exc:
                # The database is down: sends fail too, nothing is lost.
                log.debug("tail check failed: %s", exc)

    async def check(self, behind: dict[str, int]) -> dict[str, int]:
        """Nudge rooms still behind the tail seen one interval ago; the tails
        each room is behind now, for the next check."""
        rooms = dict(self._rooms())
        ids = list(rooms)
        tails: dict[str, int] = {}
        for start in range(0, len(ids), TAIL_CHECK_CHUNK):
            chunk = ids[start : start + TAIL_CHECK_CHUNK]
            async with self._db.transaction() as db:
                tails.update(await conversations.last_seqs(db, chunk))
        now_behind: dict[str, int] = {}
        for conversation_id, room in rooms.items():
            tail = tails.get(conversation_id)
            if tail is None or room.last >= tail:
                continue
            if behind.get(conversation_id, 0) > room.last:
                room.nudge()
            now_behind[conversation_id] = tail
        return now_behind
