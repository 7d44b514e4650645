"""The fast writer's remembered facts (`chat/send_facts.py`): a batch to
conversations the worker wrote to a moment ago reads no snapshot, and
what changed since (on this worker or another) is honoured at once: a
remembered fact never refuses a send, and the write's guard re-checks
every fact a permission rests on. Run on both backends; SQLite has only
the careful writer, which remembers nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from chatserver.chat import conversation_end, message_send, queries
from chatserver.chat.identity import Viewer
from chatserver.chat.send_facts import SendFacts
from chatserver.chat.send_request import SendResult
from chatserver.chat.service import Chat
from chatserver.errors import ChatError
from chatserver.store import send_batch
from chatserver.store.contexts import SendContext
from tests.chat.sends import cast, chat_of, one_batch, request, seqs, viewer
from tests.conftest import Scene
from tests.helpers import Host


def facts_of(cid: str, *, title: str = "Engineer") -> SendContext:
    return SendContext(
        id=cid,
        application_id=f"app-{cid}",
        org_id="acme",
        candidate_id="cara",
        state="open",
        status="interviewing",
        has_staff_message=True,
        job_title=title,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_facts_are_used_for_their_ttl_counted_from_their_read() -> None:
    clock = Clock()
    facts = SendFacts(ttl=5.0, clock=clock)
    facts.remember([facts_of("c1"), facts_of("c2")])
    assert facts.fresh(["c1", "c2"]) == {"c1": facts_of("c1"), "c2": facts_of("c2")}
    assert facts.fresh(["c1", "c3"]) is None
    clock.now += 4.0
    # What a stored batch left does not make the read any younger.
    facts.update([facts_of("c1", title="Renamed"), facts_of("c3")])
    assert facts.fresh(["c1"]) == {"c1": facts_of("c1", title="Renamed")}
    assert facts.fresh(["c3"]) is None
    clock.now += 2.0
    assert facts.fresh(["c1"]) is None
    facts.forget(["c2"])
    assert len(facts) == 1


def test_the_least_recently_written_conversations_are_forgotten_first() -> None:
    facts = SendFacts(max_conversations=2)
    facts.remember([facts_of("c1"), facts_of("c2")])
    facts.update([facts_of("c1")])
    facts.remember([facts_of("c3")])
    assert facts.fresh(["c1", "c3"]) is not None
    assert facts.fresh(["c2"]) is None


@pytest.fixture
def snapshot_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many snapshots the fast writer reads (one entry per read)."""
    reads: list[int] = []
    real = send_batch.snapshot

    async def counted(*args: Any) -> send_batch.Snapshot:
        reads.append(1)
        return await real(*args)

    monkeypatch.setattr(send_batch, "snapshot", counted)
    return reads


async def send(chat: Chat, who: Viewer, conversation: str, client_id: str | None = None) -> Any:
    """A send through the worker's own queue (whose facts persist), or its refusal."""
    try:
        return await message_send.send_message(
            chat, who, conversation, client_id or str(uuid.uuid4()), "Hello"
        )
    except ChatError as exc:
        return exc


def fast(chat: Chat) -> bool:
    return chat.db.writes_batches_in_one_statement


async def test_a_conversation_written_to_a_moment_ago_needs_no_snapshot(
    scene: Scene, app: Any, snapshot_reads: list[int]
) -> None:
    chat, alice, cara = await cast(app)
    first = await send(chat, alice, scene.conversation)
    assert isinstance(first, SendResult)
    assert snapshot_reads == ([1] if fast(chat) else [])
    for who in (cara, alice, cara):
        assert isinstance(await send(chat, who, scene.conversation), SendResult)
    assert snapshot_reads == ([1] if fast(chat) else [])
    assert len(chat.sends.facts) == (1 if fast(chat) else 0)
    assert await seqs(chat, alice, scene.conversation) == [1, 2, 3, 4]


async def test_a_conversation_ended_since_refuses_the_candidate_at_once(
    scene: Scene, app: Any
) -> None:
    chat, alice, cara = await cast(app)
    assert isinstance(await send(chat, alice, scene.conversation), SendResult)
    await conversation_end.end_conversation(chat, alice, scene.conversation)
    refused = await send(chat, cara, scene.conversation)
    assert isinstance(refused, ChatError)
    assert refused.code.value == "conversation_ended"
    # Staff reopen it by writing, remembered facts or not.
    assert isinstance(await send(chat, alice, scene.conversation), SendResult)
    assert isinstance(await send(chat, cara, scene.conversation), SendResult)


async def test_a_status_the_host_changed_since_is_honoured_at_once(
    scene: Scene, app: Any, host: Host
) -> None:
    chat, alice, cara = await cast(app)
    assert isinstance(await send(chat, cara, scene.conversation), SendResult)
    await host.application("app-1", org="acme", candidate="cara", status="withdrawn")
    refused = await send(chat, cara, scene.conversation)
    assert isinstance(refused, ChatError)
    assert refused.code.value == "not_allowed"
    assert "withdrawn" in refused.message
    history = await queries.history(chat, alice, scene.conversation)
    assert [m["body"] for m in history if m["sender"]["id"] == "cara"] == ["Hello"]


async def test_a_retried_client_id_gets_its_original_while_the_facts_are_remembered(
    scene: Scene, app: Any
) -> None:
    chat = chat_of(app)
    alice = await viewer(chat, "staff", "alice")
    client_id = str(uuid.uuid4())
    original = await send(chat, alice, scene.conversation, client_id)
    assert isinstance(await send(chat, alice, scene.conversation), SendResult)
    again = await send(chat, alice, scene.conversation, client_id)
    assert isinstance(original, SendResult)
    assert isinstance(again, SendResult)
    assert not again.created
    assert again.message == original.message
    assert await seqs(chat, alice, scene.conversation) == [1, 2]


async def test_a_candidate_refused_before_staff_wrote_on_another_worker_is_let_through_after(
    scene: Scene, app: Any, host: Host
) -> None:
    chat = chat_of(app)
    created = await host.application("app-5", org="acme", candidate="cara", status="submitted")
    conversation = created["conversation_id"]
    alice = await viewer(chat, "staff", "alice")
    cara = await viewer(chat, "candidate", "cara", "app-5")
    waiting = await send(chat, cara, conversation)
    assert isinstance(waiting, ChatError)
    assert waiting.code.value == "not_allowed"
    # Staff write through another worker's queue: this worker's memory of
    # the conversation still says nobody from staff has written.
    (welcome,), _ = await one_batch(chat, [request(alice, conversation, "Welcome")])
    assert isinstance(welcome, SendResult)
    assert isinstance(await send(chat, cara, conversation), SendResult)
    assert await seqs(chat, alice, conversation) == [1, 2]
