"""SPEC section 3: group commit. Concurrent sends get gapless seqs per
conversation, a client_id never makes two messages, and one bad send in a
batch never costs the others."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest

from chatserver.chat import bell, conversation_end, message_send, queries
from chatserver.chat.limits import LocalLimits, Sender
from chatserver.chat.send_request import SendResult
from chatserver.chat.service import Chat
from chatserver.clock import utcnow
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings
from chatserver.store import messages as message_store
from chatserver.store.db import Database
from chatserver.store.tables import attachments, bell_marks, messages, notifications
from tests.chat.sends import cast, chat_of, one_batch, request, seqs, viewer
from tests.conftest import Scene
from tests.helpers import Host, count_rows, upload
from tests.waits import eventually_async

# Bounded load: enough concurrent sends to fill several batches, small
# enough to keep both backends well under a second.
SENDS_TO_ONE = 150
CONVERSATIONS = 8
SENDS_EACH = 25


async def test_concurrent_sends_to_one_conversation_get_gapless_seqs(
    scene: Scene, app: Any
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    cara = await viewer(chat, "candidate", "cara", "app-1")
    senders = [alice, cara]
    results = await asyncio.gather(
        *(
            message_send.send_message(
                chat, senders[i % 2], scene.conversation, str(uuid.uuid4()), f"{i}"
            )
            for i in range(SENDS_TO_ONE)
        )
    )
    assert sorted(r.message["seq"] for r in results) == list(range(1, SENDS_TO_ONE + 1))
    assert all(r.created for r in results)
    assert await seqs(chat, alice, scene.conversation) == list(range(1, SENDS_TO_ONE + 1))


async def test_concurrent_sends_to_many_conversations_are_each_gapless(
    scene: Scene, host: Host, app: Any
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    conversations = [scene.conversation]
    for n in range(1, CONVERSATIONS):
        created = await host.application(f"app-{n + 1}", candidate=f"cand-{n}")
        conversations.append(created["conversation_id"])
    sends = [
        message_send.send_message(chat, alice, conversation, str(uuid.uuid4()), f"{n}")
        for n in range(SENDS_EACH)
        for conversation in conversations
    ]
    await asyncio.gather(*sends)
    for conversation in conversations:
        assert await seqs(chat, alice, conversation) == list(range(1, SENDS_EACH + 1))
    assert await count_rows(app, messages) == CONVERSATIONS * SENDS_EACH


async def test_one_client_id_twice_in_one_batch_is_one_message(scene: Scene, app: Any) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    client_id = str(uuid.uuid4())
    outcomes, batches = await one_batch(
        chat,
        [
            request(alice, scene.conversation, "first", client_id),
            request(alice, scene.conversation, "other"),
            request(alice, scene.conversation, "first again", client_id),
        ],
    )
    assert batches == [2]
    first, other, again = outcomes
    assert isinstance(first, SendResult)
    assert isinstance(other, SendResult)
    assert isinstance(again, SendResult)
    assert (first.created, again.created) == (True, False)
    assert again.message == first.message
    assert first.message["body"] == "first"
    assert sorted([first.message["seq"], other.message["seq"]]) == [1, 2]
    assert await count_rows(app, messages) == 2


async def test_one_client_id_in_concurrent_calls_is_one_message(scene: Scene, app: Any) -> None:
    chat = chat_of(app)
    cara = await viewer(chat, "candidate", "cara", "app-1")
    client_id = str(uuid.uuid4())
    results = await asyncio.gather(
        *(
            message_send.send_message(chat, cara, scene.conversation, client_id, "Hello")
            for _ in range(20)
        )
    )
    assert [r.created for r in results].count(True) == 1
    assert len({r.message["id"] for r in results}) == 1
    assert await count_rows(app, messages) == 1


async def test_a_constraint_violation_fails_only_its_own_send(
    scene: Scene, host: Host, app: Any
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    other = (await host.application("app-2", candidate="erin"))["conversation_id"]
    # A stray row takes the seq that the next send to the conversation would
    # get, so that insert breaks the unique (conversation, seq) constraint.
    async with chat.db.transaction() as conn:
        await message_store.insert_many(
            conn,
            [
                {
                    "id": uuid.uuid4().hex,
                    "conversation_id": scene.conversation,
                    "seq": 1,
                    "sender_kind": "staff",
                    "sender_id": "alice",
                    "sender_name": "Alice Recruiter",
                    "client_id": str(uuid.uuid4()),
                    "body": "stray",
                    "html": "<p>stray</p>",
                    "created_at": utcnow(),
                    "deleted": False,
                }
            ],
        )
    outcomes, _ = await one_batch(
        chat,
        [
            request(alice, other, "before"),
            request(alice, scene.conversation, "collides"),
            request(alice, other, "after"),
        ],
    )
    before, collides, after = outcomes
    assert isinstance(collides, ChatError)
    assert isinstance(before, SendResult)
    assert isinstance(after, SendResult)
    assert (before.message["seq"], after.message["seq"]) == (1, 2)
    assert await seqs(chat, alice, other) == [1, 2]


async def test_refusals_in_a_batch_do_not_stop_the_rest(scene: Scene, app: Any) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    mallory = await viewer(chat, "staff", "mallory")
    outcomes, batches = await one_batch(
        chat,
        [
            request(alice, scene.conversation, "one"),
            request(mallory, scene.conversation, "not my organisation"),
            request(alice, "no-such-conversation", "nowhere"),
            request(alice, scene.conversation, "two"),
        ],
    )
    assert batches == [2]
    assert [type(o).__name__ for o in outcomes] == [
        "SendResult",
        "ChatError",
        "ChatError",
        "SendResult",
    ]
    assert all(o.code.value == "not_found" for o in outcomes if isinstance(o, ChatError))
    assert await seqs(chat, alice, scene.conversation) == [1, 2]


async def test_a_whole_batch_is_stored_in_one_transaction(scene: Scene, app: Any) -> None:
    count = 40
    chat = chat_of(app)
    cara = await viewer(chat, "candidate", "cara", "app-1")
    outcomes, batches = await one_batch(
        chat, [request(cara, scene.conversation, f"m{i}") for i in range(count)]
    )
    assert batches == [count]
    assert all(isinstance(o, SendResult) and o.created for o in outcomes)
    assert await count_rows(app, messages) == count


# -- two workers, races with state changes, and what takes the careful path --------
#
# On PostgreSQL a batch reads without locks, applies the policy, then writes in
# one guarded statement; the tests below make other transactions change the
# conversation between that read and that write, and run two workers' queues
# on one database. The rest hold on both backends.

PG_ONLY = pytest.mark.parametrize("backend", ["production"])
# A blocked send shows up in pg_stat_activity within this.
LOCK_WAIT_WITHIN = 10.0
TWO_WORKER_SENDS = 60


@contextlib.asynccontextmanager
async def second_worker(app: Any, settings: Settings) -> AsyncIterator[Chat]:
    """Another worker's domain: its own connection pool and send queue on the
    same database and broker."""
    chat = Chat(settings, Database.from_settings(settings), chat_of(app).events)
    await chat.start()
    try:
        yield chat
    finally:
        await chat.stop()
        await chat.db.dispose()


async def sends_waiting_for_locks(settings: Settings, count: int) -> None:
    """Return once `count` statements of this database wait for a lock."""
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as watcher:

        async def waiting() -> bool:
            cursor = await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = await cursor.fetchone()
            return row is not None and row[0] >= count

        await eventually_async(
            waiting, within=LOCK_WAIT_WITHIN, what=f"{count} sends waiting for a lock"
        )


async def refusal_code(outcome: SendResult | BaseException) -> str:
    assert isinstance(outcome, ChatError), outcome
    return outcome.code.value


async def audit_of(chat: Chat, application_id: str) -> list[str]:
    """The recorded state changes; `message.sent` events, derived from the
    messages themselves, are left out (tests/web/test_api_host.py has them)."""
    trail = await queries.audit_trail(chat, application_id)
    return [event["action"] for event in trail if event["action"] != "message.sent"]


async def test_two_workers_sending_to_the_same_conversations_get_gapless_seqs(
    scene: Scene, host: Host, app: Any, settings: Settings
) -> None:
    chat = chat_of(app)
    other = (await host.application("app-2", candidate="erin"))["conversation_id"]
    async with second_worker(app, settings) as chat2:
        alice = await viewer(chat, "staff", "alice")
        bob = await viewer(chat2, "staff", "bob")
        results = await asyncio.gather(
            *(
                message_send.send_message(worker, who, conversation, str(uuid.uuid4()), f"{n}")
                for n in range(TWO_WORKER_SENDS)
                for worker, who in ((chat, alice), (chat2, bob))
                for conversation in (scene.conversation, other)
            )
        )
    assert all(r.created for r in results)
    for conversation in (scene.conversation, other):
        expected = list(range(1, 2 * TWO_WORKER_SENDS + 1))
        assert await seqs(chat, alice, conversation) == expected
    assert len({r.message["id"] for r in results}) == len(results)
    assert await count_rows(app, messages) == 4 * TWO_WORKER_SENDS


async def test_one_client_id_through_two_workers_at_once_is_one_message(
    scene: Scene, app: Any, settings: Settings
) -> None:
    chat = chat_of(app)
    client_id = str(uuid.uuid4())
    async with second_worker(app, settings) as chat2:
        cara = await viewer(chat, "candidate", "cara", "app-1")
        results = await asyncio.gather(
            *(
                message_send.send_message(worker, cara, scene.conversation, client_id, "Hello")
                for _ in range(10)
                for worker in (chat, chat2)
            )
        )
    assert [r.created for r in results].count(True) == 1
    assert all(r.message == results[0].message for r in results)
    assert await count_rows(app, messages) == 1


@PG_ONLY
async def test_one_file_sent_through_two_workers_at_once_goes_with_one_message(
    scene: Scene, host: Host, app: Any, settings: Settings
) -> None:
    """Each worker's careful write claims the file under its row lock. A
    lock held here until both wait for it makes their transactions overlap;
    then one takes the file and the other finds it sent."""
    chat = chat_of(app)
    other = (await host.application("app-2", candidate="erin"))["conversation_id"]
    file_id = (await upload(scene.alice, "notes.txt", b"Interview notes")).json()["id"]
    async with second_worker(app, settings) as chat2:
        senders = [
            (worker, await viewer(worker, "staff", "alice"), conversation)
            for worker, conversation in ((chat, scene.conversation), (chat2, other))
        ]
        async with await psycopg.AsyncConnection.connect(settings.database_url) as holder:
            await holder.execute("SELECT 1 FROM attachments WHERE id = %s FOR UPDATE", (file_id,))
            sends = [
                asyncio.ensure_future(
                    message_send.send_message(w, who, c, str(uuid.uuid4()), "Notes", [file_id])
                )
                for w, who, c in senders
            ]
            await sends_waiting_for_locks(settings, 2)
            await holder.rollback()
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
    created = [o for o in outcomes if isinstance(o, SendResult)]
    assert [await refusal_code(o) for o in outcomes if o not in created] == ["not_found"]
    (taken,) = created
    assert [f["id"] for f in taken.message["attachments"]] == [file_id]
    assert await count_rows(app, attachments, message_id=taken.message["id"]) == 1


@PG_ONLY
async def test_a_retry_racing_on_another_worker_gets_the_original(
    scene: Scene, app: Any, settings: Settings
) -> None:
    """Both workers read before either writes, so neither sees the other's
    message; the second write then breaks the client_id constraint and its
    send is answered with the original."""
    chat = chat_of(app)
    cara = await viewer(chat, "candidate", "cara", "app-1")
    client_id = str(uuid.uuid4())
    async with (
        second_worker(app, settings) as chat2,
        await psycopg.AsyncConnection.connect(settings.database_url) as holder,
    ):
        await holder.execute(
            "SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", [scene.conversation]
        )
        first = asyncio.ensure_future(
            one_batch(chat, [request(cara, scene.conversation, "Hi", client_id)])
        )
        second = asyncio.ensure_future(
            one_batch(chat2, [request(cara, scene.conversation, "Hi", client_id)])
        )
        await sends_waiting_for_locks(settings, 2)
        await holder.commit()
        (a,), _ = await first
        (b,), _ = await second
    assert isinstance(a, SendResult)
    assert isinstance(b, SendResult)
    assert sorted([a.created, b.created]) == [False, True]
    assert a.message == b.message
    assert a.message["seq"] == 1
    assert await count_rows(app, messages) == 1


@PG_ONLY
async def test_ending_a_conversation_while_a_candidate_send_waits_refuses_it(
    scene: Scene, app: Any, settings: Settings
) -> None:
    """The batch read the conversation open; it was ended before the write
    took its lock, so the write's guard fails and the careful path refuses."""
    chat = chat_of(app)
    cara = await viewer(chat, "candidate", "cara", "app-1")
    async with await psycopg.AsyncConnection.connect(settings.database_url) as holder:
        await holder.execute(
            "UPDATE conversations SET state = 'ended' WHERE id = %s", [scene.conversation]
        )
        batch = asyncio.ensure_future(
            one_batch(chat, [request(cara, scene.conversation, "Still there?")])
        )
        await sends_waiting_for_locks(settings, 1)
        await holder.commit()
        (outcome,), stored = await batch
    assert await refusal_code(outcome) == "conversation_ended"
    assert stored == []
    assert await count_rows(app, messages) == 0


@PG_ONLY
async def test_ending_a_conversation_while_a_staff_send_waits_reopens_it(
    scene: Scene, app: Any, settings: Settings
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    async with await psycopg.AsyncConnection.connect(settings.database_url) as holder:
        await holder.execute(
            "UPDATE conversations SET state = 'ended' WHERE id = %s", [scene.conversation]
        )
        batch = asyncio.ensure_future(
            one_batch(chat, [request(alice, scene.conversation, "One more thing")])
        )
        await sends_waiting_for_locks(settings, 1)
        await holder.commit()
        (outcome,), _ = await batch
    assert isinstance(outcome, SendResult)
    # After the system line that says it reopened the conversation (seq 1).
    assert outcome.message["seq"] == 2
    history = await queries.history(chat, alice, scene.conversation)
    assert [m["sender"]["kind"] for m in history] == ["system", "staff"]
    assert history[0]["event"]["type"] == "reopened"
    state = await queries.conversation(chat, alice, scene.conversation)
    assert state["state"] == "open"
    assert (await audit_of(chat, "app-1"))[-1] == "conversation.reopened"


@PG_ONLY
async def test_a_withdrawal_between_the_read_and_the_write_refuses_the_sends(
    scene: Scene, app: Any, settings: Settings
) -> None:
    """The status changes after the batch's read; the write (held back by a
    table lock until the change commits) sees it, and nothing is stored."""
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    cara = await viewer(chat, "candidate", "cara", "app-1")
    async with await psycopg.AsyncConnection.connect(settings.database_url) as holder:
        await holder.execute("LOCK TABLE messages IN SHARE MODE")
        await holder.execute("UPDATE applications SET status = 'withdrawn' WHERE id = 'app-1'")
        batch = asyncio.ensure_future(
            one_batch(
                chat,
                [request(alice, scene.conversation, "Hi"), request(cara, scene.conversation, "Hi")],
            )
        )
        await sends_waiting_for_locks(settings, 1)
        await holder.commit()
        outcomes, stored = await batch
    assert [await refusal_code(o) for o in outcomes] == ["not_allowed", "not_allowed"]
    assert stored == []
    assert await count_rows(app, messages) == 0


async def test_a_candidate_may_write_first_only_after_staff_even_within_a_batch(
    scene: Scene, host: Host, app: Any
) -> None:
    chat = chat_of(app)
    submitted = (await host.application("app-2", candidate="erin"))["conversation_id"]
    alice = await viewer(chat, "staff", "alice")
    erin = await viewer(chat, "candidate", "erin", "app-2")
    outcomes, batches = await one_batch(
        chat,
        [
            request(erin, submitted, "Too early"),
            request(alice, submitted, "Hello Erin"),
            request(erin, submitted, "Hello!"),
        ],
    )
    too_early, staff_first, reply = outcomes
    assert await refusal_code(too_early) == "not_allowed"
    assert isinstance(staff_first, SendResult)
    assert isinstance(reply, SendResult)
    assert (staff_first.message["seq"], reply.message["seq"]) == (1, 2)
    assert batches == [2]


async def test_a_send_writes_nothing_per_recipient_and_the_bell_is_derived(
    scene: Scene, app: Any
) -> None:
    """Issue 10: no row per staff member per candidate message; every staff
    member's bell still shows it, the other organisation's does not."""
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    bob = await viewer(chat, "staff", "bob")
    mallory = await viewer(chat, "staff", "mallory")
    cara = await viewer(chat, "candidate", "cara", "app-1")
    outcomes, _ = await one_batch(
        chat,
        [request(cara, scene.conversation, "Question"), request(alice, scene.conversation, "Yes")],
    )
    question, answer = outcomes
    assert isinstance(question, SendResult)
    assert isinstance(answer, SendResult)
    assert await count_rows(app, notifications) == 0
    assert await count_rows(app, bell_marks) == 0
    for staff in (alice, bob):
        staff_bell = await bell.listing(chat, staff)
        assert staff_bell["unread"] == 1
        [entry] = staff_bell["notifications"]
        assert (entry["message"], entry["count"]) == (question.message["id"], 1)
    assert await bell.listing(chat, mallory) == {"notifications": [], "unread": 0}
    candidate_bell = await bell.listing(chat, cara)
    assert [n["text"] for n in candidate_bell["notifications"]] == [
        "New message from Alice Recruiter about Teacher of Mathematics"
    ]


async def test_a_send_with_attachments_keeps_its_place_in_a_batch(scene: Scene, app: Any) -> None:
    chat = chat_of(app)
    cara = await viewer(chat, "candidate", "cara", "app-1")
    response = await upload(scene.cara, "notes.txt", b"my notes")
    assert response.status_code == 201, response.text
    attachment = response.json()["id"]
    with_file = request(cara, scene.conversation, "see attached")
    with_file.attachment_ids = (attachment,)
    outcomes, batches = await one_batch(
        chat,
        [
            request(cara, scene.conversation, "before"),
            with_file,
            request(cara, scene.conversation, "after"),
        ],
    )
    assert batches == [3]
    assert all(isinstance(o, SendResult) for o in outcomes)
    stored = [o.message for o in outcomes if isinstance(o, SendResult)]
    assert [(m["body"], m["seq"]) for m in stored] == [
        ("before", 1),
        ("see attached", 2),
        ("after", 3),
    ]
    assert [a["id"] for a in stored[1]["attachments"]] == [attachment]
    retry = request(cara, scene.conversation, "see attached", with_file.client_id)
    (again,), _ = await one_batch(chat, [retry])
    assert isinstance(again, SendResult)
    assert not again.created
    assert again.message == stored[1]


async def test_a_staff_message_in_a_batch_reopens_an_ended_conversation(
    scene: Scene, app: Any
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    cara = await viewer(chat, "candidate", "cara", "app-1")
    await conversation_end.end_conversation(chat, alice, scene.conversation)
    outcomes, _ = await one_batch(
        chat,
        [
            request(cara, scene.conversation, "Hello?"),
            request(alice, scene.conversation, "Reopening"),
            request(cara, scene.conversation, "Thanks"),
        ],
    )
    refused, reopening, reply = outcomes
    assert await refusal_code(refused) == "conversation_ended"
    assert isinstance(reopening, SendResult)
    assert isinstance(reply, SendResult)
    # System lines: ended (1), then reopened (2) just before the message.
    assert (reopening.message["seq"], reply.message["seq"]) == (3, 4)
    history = await queries.history(chat, alice, scene.conversation)
    assert [m.get("event", {}).get("type") for m in history] == ["ended", "reopened", None, None]
    state = await queries.conversation(chat, alice, scene.conversation)
    assert state["state"] == "open"
    assert (await audit_of(chat, "app-1"))[-2:] == ["conversation.ended", "conversation.reopened"]


async def test_a_fast_message_is_the_message_history_shows(scene: Scene, app: Any) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    (sent,), _ = await one_batch(chat, [request(alice, scene.conversation, "**Hi** there")])
    assert isinstance(sent, SendResult)
    assert await queries.history(chat, alice, scene.conversation) == [sent.message]


class CountedLimits(LocalLimits):
    """The worker's own limits, recording what the queue asks of them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.asked: list[list[Sender]] = []

    async def take_sends(self, senders: Sequence[Sender]) -> dict[int, ChatError]:
        self.asked.append(list(senders))
        return await super().take_sends(senders)


async def test_a_batch_spends_its_senders_rate_limits_at_once_and_refuses_only_who_is_over(
    scene: Scene, app: Any
) -> None:
    chat, alice, cara = await cast(app)
    # A burst of two and no refill within the test: alice's third send is over.
    limits = CountedLimits(chat.settings.with_(send_rate=0.001, send_burst=2))
    senders = [alice, alice, cara, alice, cara]
    requests = [request(who, scene.conversation, f"{n}") for n, who in enumerate(senders)]
    outcomes, batches = await one_batch(chat, requests, limits)
    assert limits.asked == [[(who.kind.value, who.id) for who in senders]]
    refused = outcomes[3]
    assert isinstance(refused, ChatError)
    assert refused.code is ErrorCode.RATE_LIMITED
    assert (refused.retry_after_ms or 0) > 0
    stored = [o for n, o in enumerate(outcomes) if n != 3]
    assert [o.message["seq"] for o in stored if isinstance(o, SendResult)] == [1, 2, 3, 4]
    assert batches == [4]
    assert await seqs(chat, alice, scene.conversation) == [1, 2, 3, 4]
