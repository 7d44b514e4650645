"""Who is signed in, for many sessions at once (docs/performance.md, "The
reconnect storm"): the session checks that arrive while one batch of them
is in flight, or in the same event-loop turn, are answered together by one
transaction with one `SELECT … WHERE id IN (…)` per table, and each caller
gets exactly what `queries.viewer_for` would have answered it.

When a worker dies its sockets reconnect to the survivor at once, and each
handshake checked its session in a transaction of its own (a pool
checkout, BEGIN, one primary-key SELECT, COMMIT): 10-18 % of the
survivor's CPU in the storm's profiles. A batch pays that once.

How batches are formed, and why nothing is cached (a session ended a
moment ago is refused at once): `chat/batches.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat.access import candidate_holds
from chatserver.chat.batches import Batches
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.chat.signing import SESSION_TIME_PRECISION
from chatserver.store import conversations, people
from chatserver.store.conversations import Binding
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
    # When the session was signed (a candidate's: when they last opened a
    # link in this browser); None for one that was not read from a cookie.
    signed_at: datetime | None = None

    @property
    def is_staff(self) -> bool:
        # As `viewer_for` always had it: anything but staff is a candidate.
        return self.kind == Role.STAFF.value


def viewer_from_row(
    lookup: Lookup, row: RowMapping | None, bindings: Mapping[str, Binding]
) -> Viewer | None:
    """THE session rule, on the person's row (None: no such person): None
    if they are unknown, removed by the host (staff), or (`generation`
    given: a session's) their sessions were ended since it was issued. A
    candidate sees the session's applications that are still theirs
    (`bindings`: each application's candidate and since when)."""
    if row is None:
        return None
    if lookup.is_staff and row["removed_at"] is not None:
        return None
    if lookup.generation is not None and row["session_generation"] != lookup.generation:
        return None
    if lookup.is_staff:
        return Viewer(Role.STAFF, row["id"], row["name"], row["timezone"], org_id=row["org_id"])
    # Those the session still holds (a cookie left on a shared computer
    # does not get back an application given away and back).
    held = [
        (a, binding)
        for a in lookup.application_ids
        if candidate_holds(
            binding := bindings.get(a), lookup.person_id, lookup.signed_at, SESSION_TIME_PRECISION
        )
        and binding is not None
    ]
    return Viewer(
        Role.CANDIDATE,
        row["id"],
        row["name"],
        row["timezone"],
        application_ids=tuple(a for a, _ in held),
        application_orgs=tuple(binding.org_id for _, binding in held),
    )


async def read_bindings(conn: AsyncConnection, lookups: Sequence[Lookup]) -> dict[str, Binding]:
    """The bindings of every application the candidate lookups name."""
    wanted = {a for q in lookups if not q.is_staff for a in q.application_ids}
    return await conversations.application_bindings(conn, wanted)


class ViewerBatches(Batches[Lookup, Viewer | None]):
    """The batcher of one worker's session checks (held by `Chat`)."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        super().__init__("viewer lookups", max_batch)
        self._db = db

    async def viewer_for(
        self,
        kind: str,
        person_id: str,
        application_ids: tuple[str, ...] = (),
        generation: int | None = None,
        signed_at: datetime | None = None,
    ) -> Viewer | None:
        """`queries.viewer_for`'s answer, from the next batch."""
        return await self.ask(Lookup(kind, person_id, application_ids, generation, signed_at))

    async def read(self, lookups: Sequence[Lookup]) -> list[Viewer | None]:
        async with self._db.transaction() as conn:
            staff = await people.staff_by_ids(conn, {q.person_id for q in lookups if q.is_staff})
            candidates = await people.candidates_by_ids(
                conn, {q.person_id for q in lookups if not q.is_staff}
            )
            bindings = await read_bindings(conn, lookups)
        return [
            viewer_from_row(q, (staff if q.is_staff else candidates).get(q.person_id), bindings)
            for q in lookups
        ]
