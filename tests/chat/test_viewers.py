"""The session check, batched (`chat/viewers.py`): concurrent lookups are
answered by one transaction per batch, each exactly as the unbatched
`queries.viewer_for` answers it, with nothing cached between batches and a
failed batch's error raised by every one of its callers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from chatserver.chat import queries, sessions
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.chat.service import Chat
from chatserver.chat.viewers import MAX_BATCH, Lookup, ViewerBatches
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings
from chatserver.store.db import Database
from chatserver.store.tables import candidates, staff
from tests.helpers import AUTH, Host
from tests.waits import eventually_async

STAFF = [f"staff-{n}" for n in range(8)]
REMOVED = STAFF[:2]
CANDIDATES = [f"cand-{n}" for n in range(8)]
SIGNED_OUT = CANDIDATES[:2] + STAFF[2:3]
LOOKUPS = 500
BEFORE_EVERYTHING = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
async def own_db(settings: Settings) -> AsyncIterator[Database]:
    """The app's database through an engine of the test's own: what it
    counts is only what the batcher under test runs (the app's background
    tasks use the app's engine)."""
    db = Database.from_settings(settings)
    try:
        yield db
    finally:
        await db.dispose()


def chat_of(app: Any) -> Chat:
    chat = app.state.services.chat
    assert isinstance(chat, Chat)
    return chat


@dataclass
class Counted:
    """What the engine ran: transactions begun, and the person SELECTs."""

    transactions: int = 0
    person_selects: list[str] = field(default_factory=list)


@contextlib.contextmanager
def counting(db: Database) -> Iterator[Counted]:
    seen = Counted()
    engine = db.engine.sync_engine

    def on_begin(_conn: Any) -> None:
        seen.transactions += 1

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.person_selects.append(statement)

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_execute)


async def provision(host: Host, chat: Chat) -> dict[tuple[str, str], int]:
    """Staff (some removed by the host), candidates (some with their
    sessions ended); every person's current session generation."""
    for staff_id in STAFF:
        await host.staff(staff_id, org="acme")
    for n, candidate in enumerate(CANDIDATES):
        await host.application(f"app-{n}", org="acme", candidate=candidate)
    for staff_id in REMOVED:
        response = await host.client.delete(f"/api/v1/staff/{staff_id}", headers=AUTH)
        assert response.status_code == 204
    for person in SIGNED_OUT:
        kind = Role.STAFF if person in STAFF else Role.CANDIDATE
        await sessions.sign_out(chat, kind.value, person)
    generations: dict[tuple[str, str], int] = {}
    async with chat.db.transaction() as conn:
        for table, kind in ((staff, Role.STAFF), (candidates, Role.CANDIDATE)):
            rows = await conn.execute(select(table.c.id, table.c.session_generation))
            for person_id, generation in rows:
                generations[(kind.value, person_id)] = generation
    return generations


def mixed_lookups(generations: dict[tuple[str, str], int], count: int) -> list[Lookup]:
    """Every kind of question a session can ask, repeated and shuffled:
    current, ended and absent generations, removed and unknown people, an id
    of one kind asked as the other, the same person with other applications."""
    people = [*generations, ("staff", "nobody"), ("candidate", "nobody"), ("candidate", STAFF[4])]
    people.append(("staff", CANDIDATES[4]))
    rng = random.Random(20261202)
    lookups = []
    for n in range(count):
        kind, person_id = people[n % len(people)]
        current = generations.get((kind, person_id), 0)
        generation = rng.choice([current, current, current - 1, current + 1, None])
        applications = tuple(f"app-{m}" for m in range(rng.randrange(3)))
        lookups.append(Lookup(kind, person_id, applications, generation))
    rng.shuffle(lookups)
    return lookups


async def one_by_one(chat: Chat, lookups: list[Lookup]) -> list[Viewer | None]:
    return [
        await queries.viewer_for(
            chat, q.kind, q.person_id, q.application_ids, q.generation, q.signed_at
        )
        for q in lookups
    ]


async def all_at_once(batches: ViewerBatches, lookups: list[Lookup]) -> list[Viewer | None]:
    return list(
        await asyncio.gather(
            *(
                batches.viewer_for(
                    q.kind, q.person_id, q.application_ids, q.generation, q.signed_at
                )
                for q in lookups
            )
        )
    )


async def test_concurrent_lookups_answer_as_one_by_one_in_few_transactions(
    app: Any, host: Host, own_db: Database
) -> None:
    chat = chat_of(app)
    generations = await provision(host, chat)
    lookups = mixed_lookups(generations, LOOKUPS)
    expected = await one_by_one(chat, lookups)

    with counting(own_db) as seen:
        answers = await all_at_once(ViewerBatches(own_db), lookups)

    assert answers == expected
    # The mix covers each rule, both ways.
    kinds = {
        (q.kind, q.person_id in REMOVED, a is None) for q, a in zip(lookups, answers, strict=True)
    }
    assert ("staff", False, False) in kinds
    assert ("staff", False, True) in kinds
    assert ("candidate", False, False) in kinds
    assert ("candidate", False, True) in kinds
    assert ("staff", True, False) not in kinds
    assert math.ceil(LOOKUPS / MAX_BATCH) <= seen.transactions
    assert seen.transactions <= math.ceil(LOOKUPS / MAX_BATCH) + 1
    # One IN query per table (staff, candidates, the candidates'
    # applications) per batch, no more.
    assert len(seen.person_selects) <= 3 * seen.transactions


async def test_each_caller_gets_its_own_answer(app: Any, host: Host, own_db: Database) -> None:
    """Spelled out, not only compared: one batch asks for the same people
    under different sessions."""
    chat = chat_of(app)
    generations = await provision(host, chat)
    alive, removed, cara = STAFF[5], REMOVED[0], CANDIDATES[5]
    ended = SIGNED_OUT[0]
    g_alive, g_cara = generations[("staff", alive)], generations[("candidate", cara)]
    g_ended = generations[("candidate", ended)]
    lookups = [
        Lookup("staff", alive, (), g_alive),
        Lookup("staff", alive, (), g_alive + 1),
        Lookup("staff", alive),
        Lookup("staff", removed),
        Lookup("staff", removed, (), generations[("staff", removed)]),
        Lookup("candidate", cara, ("app-5",), g_cara),
        Lookup("candidate", cara, ("app-5", "app-6"), g_cara),
        Lookup("candidate", cara, ("app-5",), g_cara, BEFORE_EVERYTHING),
        Lookup("candidate", cara, ("app-5",), g_cara, datetime.now(UTC)),
        Lookup("candidate", ended, ("app-0",), g_ended - 1),
        Lookup("candidate", ended, ("app-0",), g_ended),
        Lookup("candidate", "nobody"),
        Lookup("candidate", alive),
    ]
    with counting(own_db) as seen:
        answers = await all_at_once(ViewerBatches(own_db), lookups)
    assert seen.transactions == 1
    staff_viewer = Viewer(Role.STAFF, alive, alive.title(), "UTC", org_id="acme")
    cara_app5 = Viewer(
        Role.CANDIDATE,
        cara,
        cara.title(),
        "UTC",
        application_ids=("app-5",),
        application_orgs=("acme",),
    )
    assert answers == [
        staff_viewer,
        None,
        staff_viewer,
        None,
        None,
        cara_app5,
        # app-6 is another candidate's: the session holds only what is hers.
        cara_app5,
        # Signed before app-5 became hers: it does not hold it.
        Viewer(Role.CANDIDATE, cara, cara.title(), "UTC", application_ids=()),
        cara_app5,
        None,
        Viewer(
            Role.CANDIDATE,
            ended,
            ended.title(),
            "UTC",
            application_ids=("app-0",),
            application_orgs=("acme",),
        ),
        None,
        None,
    ]


async def test_a_sign_out_between_two_lookups_is_seen_by_the_second(app: Any, host: Host) -> None:
    chat = chat_of(app)
    generations = await provision(host, chat)
    person = STAFF[6]
    generation = generations[("staff", person)]
    assert await chat.viewers.viewer_for("staff", person, (), generation) is not None
    await sessions.sign_out(chat, "staff", person)
    assert await chat.viewers.viewer_for("staff", person, (), generation) is None


class HeldDatabase(Database):
    """The app's database whose first transaction, its reads done, waits
    for `release` before it commits: a batch held in flight."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.engine)
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with super().transaction() as conn:
            yield conn
            if not self.read.is_set():
                self.read.set()
                await self.release.wait()


async def test_a_lookup_arriving_during_a_batch_waits_for_the_next_one(
    app: Any, host: Host, own_db: Database
) -> None:
    """Nothing is shared with a batch already in flight: a sign-out that
    commits while it runs is seen by every lookup asked after it."""
    chat = chat_of(app)
    generations = await provision(host, chat)
    person = STAFF[7]
    generation = generations[("staff", person)]
    held = HeldDatabase(own_db)
    batches = ViewerBatches(held)
    with counting(own_db) as seen:
        first = asyncio.ensure_future(batches.viewer_for("staff", person, (), generation))
        await held.read.wait()
        await sessions.sign_out(chat, "staff", person)
        second = asyncio.ensure_future(batches.viewer_for("staff", person, (), generation))
        await eventually_async(lambda: batches.queued == 1, within=5, what="the second queued")
        held.release.set()
        before, after = await first, await second
    assert before is not None
    assert before.id == person
    assert after is None
    # The held batch and the next one (the sign-out ran on the app's engine).
    assert seen.transactions == 2


def dead_database(settings: Settings, tmp_path: Path) -> Database:
    """A database every transaction fails on: PostgreSQL on a port nobody
    listens on; SQLite in a file without the schema."""
    if settings.embedded:
        return Database.from_settings(settings.with_(data_dir=tmp_path / "empty"))
    url = settings.sqlalchemy_url
    server = url.split("@", 1)[1].split("/", 1)[0]
    return Database.from_settings(settings.with_(database_url=url.replace(server, "127.0.0.1:1")))


async def test_a_failed_batch_raises_its_error_in_every_caller(
    app: Any, settings: Settings, tmp_path: Path
) -> None:
    dead = dead_database(settings, tmp_path)
    try:
        unbatched = Chat(settings, dead, chat_of(app).events)
        with pytest.raises(ChatError) as single:
            await queries.viewer_for(unbatched, "staff", "anyone", (), 0)
        batches = ViewerBatches(dead)
        lookups = [Lookup("staff" if n % 2 else "candidate", f"p-{n}") for n in range(30)]
        outcomes = await asyncio.gather(
            *(batches.viewer_for(q.kind, q.person_id) for q in lookups), return_exceptions=True
        )
    finally:
        await dead.dispose()
    assert single.value.code is ErrorCode.UNAVAILABLE
    assert all(isinstance(o, ChatError) for o in outcomes), outcomes
    assert {o.code for o in outcomes if isinstance(o, ChatError)} == {ErrorCode.UNAVAILABLE}
    # The batcher is not stuck after a failure: the next lookup is asked anew.
    assert batches.queued == 0
