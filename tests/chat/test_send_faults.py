"""Issue 16 items 1 and 3, issue 10 item 3 on the send queue: an ack waits
for the commit only, never for the broker; a retry that finds its message
stored publishes it again; a send the database cannot take in time is
answered `unavailable` within a bound, and its retry finds it if it
committed after all; clients that leave while their requests are in the
database cost the next send nothing. Both backends (the stalls are of our
making, the databases real)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat.events import Events
from chatserver.chat.formatting import render
from chatserver.chat.identity import Viewer
from chatserver.chat.send_request import SendRequest, SendResult
from chatserver.chat.sending import SendQueue
from chatserver.chat.service import Chat
from chatserver.clock import utcnow
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings
from chatserver.store.contexts import SendContext
from chatserver.store.db import Database
from chatserver.store.tables import messages, organisations
from tests.chat.sends import chat_of, viewer
from tests.chat.test_sending import PG_ONLY
from tests.conftest import Scene
from tests.helpers import count_rows
from tests.waits import eventually_async

# Generous bounds for a loaded machine; each is far below what the faults
# would otherwise cost (a stalled broker: forever; a busy pool: 5 s).
PUBLISH_BOUND = 0.2
SEND_BOUND = 0.5
ANSWER_WITHIN = 3.0


class GatedEvents(Events):
    """Publishes that wait for `gate` (a stalled broker), or fail."""

    def __init__(self, inner: Events, *, fail: bool = False) -> None:
        super().__init__(inner.broker)
        self.gate = asyncio.Event()
        self.fail = fail
        self.published: list[tuple[SendContext, Mapping[str, Any]]] = []

    async def publish(self, items: Sequence[tuple[SendContext, Mapping[str, Any]]]) -> None:
        if self.fail:
            raise ConnectionError("the broker is down")
        await self.gate.wait()
        self.published.extend(items)
        await super().publish(items)


def send(who: Viewer, conversation: str, body: str, client_id: str | None = None) -> SendRequest:
    return SendRequest(who, conversation, client_id or str(uuid.uuid4()), body, render(body))


def queue(chat: Chat, events: Events, db: Database | None = None, **bounds: float) -> SendQueue:
    return SendQueue(
        db or chat.db,
        events,
        chat.limits,
        utcnow,
        max_batch=16,
        writers=1,
        publish_timeout=bounds.get("publish_timeout", PUBLISH_BOUND),
        send_timeout=bounds.get("send_timeout", 10.0),
    )


async def test_an_ack_never_waits_for_a_stalled_broker(scene: Scene, app: Any) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    stalled = GatedEvents(chat.events)
    sends = queue(chat, stalled)
    await sends.start()
    try:
        first = await asyncio.wait_for(
            sends.submit(send(alice, scene.conversation, "One")), ANSWER_WITHIN
        )
        # The next batch is not held back by the first one's publish either.
        second = await asyncio.wait_for(
            sends.submit(send(alice, scene.conversation, "Two")), ANSWER_WITHIN
        )
        assert (first.message["seq"], second.message["seq"]) == (1, 2)
        assert await count_rows(app, messages) == 2
        assert stalled.published == []
        stalled.gate.set()  # the broker comes back: the late publishes land
        await eventually_async(
            lambda: len(stalled.published) >= 2, within=ANSWER_WITHIN, what="the late publishes"
        )
        seqs = [e["message"]["seq"] for _, e in stalled.published if e["type"] == "message"]
        assert sorted(seqs) == [1, 2]
    finally:
        await sends.stop()


async def test_a_retry_publishes_its_stored_message_again(scene: Scene, app: Any) -> None:
    """The first attempt committed but its publish failed (as when its
    worker dies in between): the retry with the same client_id gets the
    original and publishes it again, once, for the rooms to deliver (they
    drop a seq they already have)."""
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    client_id = str(uuid.uuid4())
    broken = GatedEvents(chat.events, fail=True)
    first_queue = queue(chat, broken)
    await first_queue.start()
    try:
        first = await first_queue.submit(send(alice, scene.conversation, "Hello", client_id))
    finally:
        await first_queue.stop()
    assert first.created

    working = GatedEvents(chat.events)
    working.gate.set()
    second_queue = queue(chat, working)
    await second_queue.start()
    try:
        again = await second_queue.submit(send(alice, scene.conversation, "Hello", client_id))
    finally:
        await second_queue.stop()
    assert not again.created
    assert again.message == first.message
    assert [(ctx.id, event) for ctx, event in working.published] == [
        (scene.conversation, {"type": "message", "message": first.message})
    ]
    assert await count_rows(app, messages) == 1


class GatedDatabase(Database):
    """A database whose transactions wait for `gate` first: every pooled
    connection busy, or a database too slow to answer."""

    def __init__(self, inner: Database) -> None:
        super().__init__(inner.engine)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()  # a transaction waits for the gate

    async def _pass_gate(self) -> None:
        self.waiting.set()
        await self.gate.wait()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        await self._pass_gate()
        async with super().transaction() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """The fast writer's way in (PostgreSQL), gated alike."""
        await self._pass_gate()
        async with super().driver_connection() as raw:
            yield raw


async def test_a_send_the_database_cannot_take_in_time_is_answered_unavailable(
    scene: Scene, app: Any
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    slow = GatedDatabase(chat.db)
    sends = queue(chat, chat.events, slow, send_timeout=SEND_BOUND)
    await sends.start()
    client_id = str(uuid.uuid4())
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(ChatError) as refused:
            await asyncio.wait_for(
                sends.submit(send(alice, scene.conversation, "Hi", client_id)), ANSWER_WITHIN
            )
        assert refused.value.code is ErrorCode.UNAVAILABLE
        assert asyncio.get_running_loop().time() - started < ANSWER_WITHIN
        slow.gate.set()  # the database answers after all: the send commits
        retry = await asyncio.wait_for(
            sends.submit(send(alice, scene.conversation, "Hi", client_id)), ANSWER_WITHIN
        )
    finally:
        slow.gate.set()
        await sends.stop()
    assert retry.message["seq"] == 1
    assert await count_rows(app, messages) == 1


async def test_a_send_that_expired_in_the_queue_is_never_written(scene: Scene, app: Any) -> None:
    """Behind a batch the database is slow to take, a send answered
    `unavailable` is dropped before any write: nothing of it is stored, and
    the overloaded queue does not spend a write on it."""
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    slow = GatedDatabase(chat.db)
    sends = queue(chat, chat.events, slow, send_timeout=SEND_BOUND)
    await sends.start()
    try:
        writing = asyncio.ensure_future(sends.submit(send(alice, scene.conversation, "First")))
        # The writer has taken it and waits on the database.
        await asyncio.wait_for(slow.waiting.wait(), ANSWER_WITHIN)
        queued = asyncio.ensure_future(sends.submit(send(alice, scene.conversation, "Second")))
        for pending in (writing, queued):
            with pytest.raises(ChatError) as refused:
                await asyncio.wait_for(pending, ANSWER_WITHIN)
            assert refused.value.code is ErrorCode.UNAVAILABLE
        slow.gate.set()
    finally:
        slow.gate.set()
        await sends.stop()
    stored = await chat_messages(app)
    assert stored == ["First"]


# Rounds of requests cancelled midway (a crowd of clients leaving), and the
# requests in each. Without the fix, every SQLite run tried (four) failed
# within its 40 rounds.
LEAVING_ROUNDS = 40
LEAVING_PER_ROUND = 8


async def test_requests_cancelled_midway_leave_the_database_writable(
    scene: Scene, app: Any
) -> None:
    """Clients leave while their requests are in the database: each task is
    cancelled at some point of a transaction that wrote and then reads.
    After each round, a send is stored within the bound. On SQLite a
    connection closed with a read still open used to keep its transaction,
    and with it the database's one write lock, until garbage collected, so
    every writer waited out its 30 s busy timeout (docs/architecture.md,
    "Rules the code keeps")."""
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    sends = queue(chat, chat.events)
    await sends.start()

    async def leaves_midway(n: int) -> None:
        async with chat.db.transaction() as conn:
            await conn.execute(insert(organisations).values(id=f"leaving-{n}", name="Leaving"))
            await conn.execute(select(func.count()).select_from(organisations))

    rng = random.Random(1)
    try:
        for round_ in range(LEAVING_ROUNDS):
            tasks = [
                asyncio.create_task(leaves_midway(round_ * LEAVING_PER_ROUND + n))
                for n in range(LEAVING_PER_ROUND)
            ]
            await asyncio.sleep(rng.random() * 0.01)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                stored = await asyncio.wait_for(
                    sends.submit(send(alice, scene.conversation, f"Round {round_}")),
                    ANSWER_WITHIN,
                )
            except (TimeoutError, ChatError) as exc:
                pytest.fail(f"after round {round_}, a send was not stored: {exc!r}")
            assert stored.message["seq"] == round_ + 1
    finally:
        await sends.stop()


async def chat_messages(app: Any) -> list[str]:
    async with chat_of(app).db.transaction() as conn:
        return list((await conn.execute(select(messages.c.body))).scalars())


@PG_ONLY
async def test_an_exhausted_pool_answers_unavailable_within_the_bound(
    scene: Scene, app: Any, settings: Settings
) -> None:
    """Every pooled connection is held (the crowd of issue 10): the send is
    answered `unavailable` at the bound, not after the pool's own timeout."""
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    tiny = Database.from_settings(dataclasses.replace(settings, db_pool_size=1, db_pool_overflow=0))
    sends = queue(chat, chat.events, tiny, send_timeout=SEND_BOUND)
    await sends.start()
    try:
        async with tiny.transaction():
            started = asyncio.get_running_loop().time()
            outcome: SendResult | BaseException
            try:
                outcome = await sends.submit(send(alice, scene.conversation, "Hi"))
            except ChatError as exc:
                outcome = exc
            waited = asyncio.get_running_loop().time() - started
        assert isinstance(outcome, ChatError)
        assert outcome.code is ErrorCode.UNAVAILABLE
        assert SEND_BOUND <= waited < ANSWER_WITHIN
    finally:
        await sends.stop()
        await tiny.dispose()


@PG_ONLY
async def test_connections_the_database_dropped_cost_a_retry_not_a_message(
    scene: Scene, app: Any
) -> None:
    """PostgreSQL ends every pooled connection (a restart, a failover):
    each send that meets a dead one is answered `unavailable` and the
    connection is dropped from the pool; the client's retries with the same
    client_id get through, and the message is stored once."""
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    sends = queue(chat, chat.events)
    await sends.start()
    try:
        await sends.submit(send(alice, scene.conversation, "Before"))
        url = chat.db.engine.url.set(drivername="postgresql")
        async with await psycopg.AsyncConnection.connect(
            url.render_as_string(hide_password=False), autocommit=True
        ) as admin:
            ended = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            row = await ended.fetchone()
            assert row is not None
            assert row[0] >= 1
        client_id = str(uuid.uuid4())
        refusals: list[ErrorCode] = []
        attempts = chat.settings.db_pool_size + chat.settings.db_pool_overflow + 2
        for _ in range(attempts):
            try:
                stored = await asyncio.wait_for(
                    sends.submit(send(alice, scene.conversation, "After", client_id)),
                    ANSWER_WITHIN,
                )
                break
            except ChatError as exc:
                refusals.append(exc.code)
        else:
            pytest.fail(f"no send got through in {attempts} attempts: {refusals}")
    finally:
        await sends.stop()
    # The pooled connection the first send used was dead: at least its
    # next user was refused, and nobody any other way.
    assert refusals
    assert set(refusals) == {ErrorCode.UNAVAILABLE}
    assert stored.message["seq"] == 2
    assert await chat_messages(app) == ["Before", "After"]
