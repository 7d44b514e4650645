"""SPEC section 3: group commit. Concurrent sends get gapless seqs per
conversation, a client_id never makes two messages, and one bad send in a
batch never costs the others."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from chatserver.chat import actions, queries
from chatserver.chat.formatting import render
from chatserver.chat.identity import Viewer
from chatserver.chat.sending import SendQueue, SendRequest, SendResult
from chatserver.chat.service import Chat
from chatserver.clock import utcnow
from chatserver.errors import ChatError
from chatserver.store import messages as message_store
from chatserver.store.tables import messages
from tests.conftest import Scene
from tests.helpers import Host, count_rows

# Bounded load: enough concurrent sends to fill several batches, small
# enough to keep both backends well under a second.
SENDS_TO_ONE = 150
CONVERSATIONS = 8
SENDS_EACH = 25


def chat_of(app: Any) -> Chat:
    chat = app.state.services.chat
    assert isinstance(chat, Chat)
    return chat


async def viewer(chat: Chat, kind: str, person_id: str, *applications: str) -> Viewer:
    found = await queries.viewer_for(chat, kind, person_id, applications)
    assert found is not None
    return found


def request(who: Viewer, conversation: str, body: str, client_id: str | None = None) -> SendRequest:
    return SendRequest(
        viewer=who,
        conversation_id=conversation,
        client_id=client_id or str(uuid.uuid4()),
        body=body,
        html=render(body),
    )


async def seqs(chat: Chat, who: Viewer, conversation: str) -> list[int]:
    history = await queries.history(chat, who, conversation, limit=200)
    return [m["seq"] for m in history]


async def one_batch(
    chat: Chat, requests: Sequence[SendRequest]
) -> tuple[list[SendResult | BaseException], list[int]]:
    """Queue every request before a single writer starts, so they are
    written as one batch; returns the outcomes and the stored batch sizes."""
    batches: list[int] = []
    queue = SendQueue(
        chat.db,
        chat.events,
        utcnow,
        max_batch=len(requests),
        writers=1,
        on_stored=lambda count, _seconds: batches.append(count),
    )
    pending = [asyncio.ensure_future(queue.submit(r)) for r in requests]
    await asyncio.sleep(0)
    assert queue.backlog == len(requests)
    await queue.start()
    try:
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
    finally:
        await queue.stop()
    return list(outcomes), batches


async def test_concurrent_sends_to_one_conversation_get_gapless_seqs(
    scene: Scene, app: Any
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    cara = await viewer(chat, "candidate", "cara", "app-1")
    senders = [alice, cara]
    results = await asyncio.gather(
        *(
            actions.send_message(
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
        actions.send_message(chat, alice, conversation, str(uuid.uuid4()), f"{n}")
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
            actions.send_message(chat, cara, scene.conversation, client_id, "Hello")
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
