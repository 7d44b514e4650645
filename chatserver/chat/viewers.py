"""Who is signed in, for many sessions at once (docs/performance.md, "The
reconnect storm"): the session checks that arrive while one batch of them
is in flight, or in the same event-loop turn, are answered together by one
transaction with one `SELECT … WHERE id IN (…)` per table, and each caller
gets exactly what `queries.viewer_for` would have answered it.

When a worker dies its sockets reconnect to the survivor at once, and each
handshake checked its session in a transaction of its own (a pool
checkout, BEGIN, one primary-key SELECT, COMMIT): 10-18 % of the
survivor's CPU in the storm's profiles. A batch pays that once.

Nothing is cached: every answer comes from a transaction that began after
its lookup was asked for (a lookup that arrives while a batch is in flight
waits for the next one), so a session ended a moment ago is refused at
once. At most one batch is in flight per worker, so an idle worker sends a
lone lookup on the loop's next turn and a busy one gathers what arrived
during the last batch. What the batch's transaction raises (the database
unavailable) every caller of that batch raises, as a single call would.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from sqlalchemy.engine import RowMapping

from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.errors import unavailable
from chatserver.store import people
from chatserver.store.db import Database

# Lookups in one transaction: bounds the IN lists (and SQLite's bound
# parameters) and how long one batch holds its connection; more waiting
# lookups go in the next batch, right after.
MAX_BATCH = 200


@dataclass(frozen=True, slots=True)
class Lookup:
    """One session's question: this person, as of this session."""

    kind: str
    person_id: str
    application_ids: tuple[str, ...] = ()
    generation: int | None = None

    @property
    def is_staff(self) -> bool:
        # As `viewer_for` always had it: anything but staff is a candidate.
        return self.kind == Role.STAFF.value


def viewer_from_row(lookup: Lookup, row: RowMapping | None) -> Viewer | None:
    """THE session rule, on the person's row (None: no such person): None
    if they are unknown, removed by the host (staff), or (`generation`
    given: a session's) their sessions were ended since it was issued."""
    if row is None:
        return None
    if lookup.is_staff and row["removed_at"] is not None:
        return None
    if lookup.generation is not None and row["session_generation"] != lookup.generation:
        return None
    if lookup.is_staff:
        return Viewer(Role.STAFF, row["id"], row["name"], row["timezone"], org_id=row["org_id"])
    return Viewer(
        Role.CANDIDATE,
        row["id"],
        row["name"],
        row["timezone"],
        application_ids=lookup.application_ids,
    )


class _Waiter:
    __slots__ = ("answer", "lookup")

    def __init__(self, lookup: Lookup, answer: asyncio.Future[Viewer | None]) -> None:
        self.lookup = lookup
        self.answer = answer


class ViewerBatches:
    """The batcher of one worker's session checks (held by `Chat`)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max_batch = max_batch
        self._waiting: collections.deque[_Waiter] = collections.deque()
        self._runner: asyncio.Task[None] | None = None

    async def viewer_for(
        self,
        kind: str,
        person_id: str,
        application_ids: tuple[str, ...] = (),
        generation: int | None = None,
    ) -> Viewer | None:
        """`queries.viewer_for`'s answer, from the next batch."""
        answer: asyncio.Future[Viewer | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiter(Lookup(kind, person_id, application_ids, generation), answer))
        if self._runner is None:
            # Started on the loop's next turn: every lookup of this turn joins.
            self._runner = asyncio.create_task(self._run(), name="viewer lookups")
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
        staff_ids = {w.lookup.person_id for w in batch if w.lookup.is_staff}
        candidate_ids = {w.lookup.person_id for w in batch if not w.lookup.is_staff}
        try:
            async with self._db.transaction() as conn:
                staff = await people.staff_by_ids(conn, staff_ids)
                candidates = await people.candidates_by_ids(conn, candidate_ids)
        except Exception as exc:
            # What a single lookup's transaction would have raised.
            for waiter in batch:
                _settle(waiter.answer, exc)
            return
        except BaseException:
            for waiter in batch:
                _settle(waiter.answer, unavailable())
            raise
        for waiter in batch:
            rows = staff if waiter.lookup.is_staff else candidates
            _settle(
                waiter.answer, viewer_from_row(waiter.lookup, rows.get(waiter.lookup.person_id))
            )

    @property
    def queued(self) -> int:
        """Lookups waiting for the next batch (not yet asked of the database)."""
        return sum(not w.answer.done() for w in self._waiting)

    async def stop(self) -> None:
        """Cancel the batch in flight; its callers get `unavailable`."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.wait({runner})


def _settle(answer: asyncio.Future[Viewer | None], result: Viewer | BaseException | None) -> None:
    """Hand one caller its answer, unless it stopped waiting."""
    if answer.done():
        return
    if isinstance(result, BaseException):
        answer.set_exception(result)
    else:
        answer.set_result(result)
