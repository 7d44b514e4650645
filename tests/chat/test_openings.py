"""Subscribe openings, batched (`chat/openings.py`): concurrent openings are
read by one transaction per batch, each answered (or refused) exactly as
the unbatched `queries.opening` answers it, a failed batch's error raised
by every one of its callers and a caller that stopped waiting skipped."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatserver.chat import queries
from chatserver.chat.identity import Viewer
from chatserver.chat.openings import MAX_BATCH, OpeningBatches
from chatserver.chat.policy import Role
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings
from chatserver.store.db import Database
from tests.chat.test_viewers import HeldDatabase, chat_of, counting, dead_database
from tests.conftest import Scene
from tests.helpers import Host, delete_message, sign_in_candidate, upload
from tests.waits import eventually_async

OPENINGS = 500
UNKNOWN = "nosuchconversation"
MALFORMED = "not an id!"
# Before, inside and past every history; past every seq a message may have.
AFTERS = (0, 2, 5, 100, 2**40)


@pytest.fixture
async def own_db(settings: Settings) -> AsyncIterator[Database]:
    """The app's database through an engine of the test's own: what it
    counts is only what the batcher under test runs."""
    db = Database.from_settings(settings)
    try:
        yield db
    finally:
        await db.dispose()


@dataclass
class World:
    viewers: dict[str, Viewer]
    conversations: dict[str, str]


async def viewer(chat: Chat, kind: str, person_id: str, apps: tuple[str, ...] = ()) -> Viewer:
    found = await queries.viewer_for(chat, kind, person_id, apps)
    assert found is not None
    return found


async def provision(chat: Chat, host: Host, scene: Scene, make: Any) -> World:
    """Two candidates of one organisation and another organisation;
    histories of different lengths, an attachment, a message Cara deleted
    for herself (hidden for her, not for the staff)."""
    erins = await host.application("app-2", org="acme", candidate="erin", status="interviewing")
    erin = await sign_in_candidate(host, make(), "app-2")
    file = (await upload(scene.alice, "offer.txt", b"The offer")).json()
    sent = await scene.alice.send(scene.conversation, "The offer", attachments=[file["id"]])
    assert sent.status_code == 201, sent.text
    for n in range(5):
        assert (await scene.cara.send(scene.conversation, f"Cara {n}")).status_code == 201
    regret = (await scene.cara.send(scene.conversation, "Forget that")).json()
    assert (await delete_message(scene.cara, regret["id"], "me")).status_code == 204
    assert (await scene.alice.send(scene.conversation, "Noted")).status_code == 201
    for n in range(3):
        assert (await erin.send(erins["conversation_id"], f"Erin {n}")).status_code == 201
    assert (await scene.mallory.send(scene.other_conversation, "Globex")).status_code == 201
    return World(
        viewers={
            "alice": await viewer(chat, "staff", "alice"),
            "mallory": await viewer(chat, "staff", "mallory"),
            "cara": await viewer(chat, "candidate", "cara", ("app-1",)),
            "cara elsewhere": await viewer(chat, "candidate", "cara", ("app-2",)),
            "erin": await viewer(chat, "candidate", "erin", ("app-2",)),
        },
        conversations={
            "cara's": scene.conversation,
            "erin's": erins["conversation_id"],
            "globex's": scene.other_conversation,
            "unknown": UNKNOWN,
            "malformed": MALFORMED,
        },
    )


Ask = tuple[str, str, int]  # viewer name, conversation name, after


def mixed(world: World, count: int) -> list[Ask]:
    every = [(v, c, a) for v in world.viewers for c in world.conversations for a in AFTERS]
    asks = [every[n % len(every)] for n in range(count)]
    random.Random(20261202).shuffle(asks)
    return asks


def outcome(result: Any) -> Any:
    """An answer, or an error as its code and message (comparable)."""
    if isinstance(result, ChatError):
        return (result.code, str(result))
    assert not isinstance(result, BaseException), result
    return result


async def one_by_one(chat: Chat, world: World, asks: list[Ask]) -> list[Any]:
    results = []
    for v, c, after in asks:
        try:
            results.append(
                await queries.opening(chat, world.viewers[v], world.conversations[c], after)
            )
        except ChatError as exc:
            results.append(outcome(exc))
    return results


async def all_at_once(batches: OpeningBatches, world: World, asks: list[Ask]) -> list[Any]:
    results = await asyncio.gather(
        *(batches.opening(world.viewers[v], world.conversations[c], a) for v, c, a in asks),
        return_exceptions=True,
    )
    return [outcome(r) for r in results]


async def test_concurrent_openings_answer_as_one_by_one_in_few_transactions(
    app: Any, host: Host, scene: Scene, new_client: Any, own_db: Database
) -> None:
    chat = chat_of(app)
    world = await provision(chat, host, scene, new_client)
    asks = mixed(world, OPENINGS)
    expected = await one_by_one(chat, world, asks)

    with counting(own_db) as seen:
        answers = await all_at_once(OpeningBatches(own_db), world, asks)

    assert answers == expected
    # A malformed id is refused before it joins a batch.
    joined = sum(c != "malformed" for _, c, _ in asks)
    assert math.ceil(joined / MAX_BATCH) <= seen.transactions
    assert seen.transactions <= math.ceil(joined / MAX_BATCH) + 1
    # The mix covers each rule: seen, refused, unknown and malformed alike.
    by_ask = dict(zip(asks, answers, strict=True))
    not_found = (ErrorCode.NOT_FOUND, "No such conversation.")
    for refused in (
        ("mallory", "cara's", 0),
        ("alice", "globex's", 0),
        ("cara", "erin's", 0),
        ("cara elsewhere", "cara's", 0),
        ("alice", "unknown", 0),
        ("alice", "malformed", 0),
    ):
        assert by_ask[refused] == not_found, refused
    ctx, page = by_ask[("alice", "cara's", 0)]
    assert ctx.id == scene.conversation
    # The system lines of the application's status come first.
    assert [m["body"] for m in page][-8:] == [
        "The offer",
        *(f"Cara {n}" for n in range(5)),
        "Forget that",
        "Noted",
    ]
    assert [a["name"] for a in page[-8]["attachments"]] == ["offer.txt"]
    _, caras = by_ask[("cara", "cara's", 0)]
    assert (caras[-2]["hidden"], caras[-2]["body"]) == (True, "")
    assert [len(by_ask[("erin", "erin's", a)][1]) for a in AFTERS] == [
        len(by_ask[("erin", "erin's", 0)][1]),
        len(by_ask[("erin", "erin's", 0)][1]) - 2,
        max(len(by_ask[("erin", "erin's", 0)][1]) - 5, 0),
        0,
        0,
    ]


async def test_a_malformed_id_is_refused_before_joining_a_batch(app: Any) -> None:
    batches = OpeningBatches(chat_of(app).db)
    alice = Viewer(Role.STAFF, "alice", "Alice", "UTC", org_id="acme")
    with pytest.raises(ChatError) as refused:
        await batches.opening(alice, MALFORMED, 0)
    assert refused.value.code is ErrorCode.NOT_FOUND
    assert batches.queued == 0


async def test_a_cancelled_caller_does_not_break_its_batch(
    app: Any, host: Host, scene: Scene, new_client: Any, own_db: Database
) -> None:
    """Cancelled while its batch is in flight, and while queued for the
    next: the others of both batches get their answers."""
    chat = chat_of(app)
    world = await provision(chat, host, scene, new_client)
    asks: list[Ask] = [
        ("alice", "cara's", 0),
        ("cara", "cara's", 2),
        ("erin", "erin's", 0),
        ("mallory", "globex's", 0),
        ("cara", "cara's", 0),
    ]
    expected = await one_by_one(chat, world, asks)
    held = HeldDatabase(own_db)
    batches = OpeningBatches(held)

    def ask(n: int) -> asyncio.Future[Any]:
        v, c, a = asks[n]
        return asyncio.ensure_future(batches.opening(world.viewers[v], world.conversations[c], a))

    with counting(own_db) as seen:
        first, dropped_in_flight = ask(0), ask(1)
        await held.read.wait()
        dropped_in_flight.cancel()
        second, dropped_queued, third = ask(2), ask(3), ask(4)
        await eventually_async(lambda: batches.queued == 3, within=5, what="three queued")
        dropped_queued.cancel()
        await eventually_async(lambda: batches.queued == 2, within=5, what="one dropped")
        held.release.set()
        answers = [outcome(await f) for f in (first, second, third)]
    assert answers == [expected[0], expected[2], expected[4]]
    for dropped in (dropped_in_flight, dropped_queued):
        with pytest.raises(asyncio.CancelledError):
            await dropped
    assert seen.transactions == 2
    assert batches.queued == 0


async def test_a_failed_batch_raises_its_error_in_every_caller(
    app: Any, host: Host, scene: Scene, new_client: Any, settings: Settings, tmp_path: Path
) -> None:
    chat = chat_of(app)
    world = await provision(chat, host, scene, new_client)
    asks = mixed(world, 60)
    asks = [a for a in asks if a[1] != "malformed"]
    dead = dead_database(settings, tmp_path)
    try:
        unbatched = Chat(settings, dead, chat.events)
        with pytest.raises(ChatError) as single:
            await queries.opening(unbatched, world.viewers["alice"], scene.conversation, 0)
        batches = OpeningBatches(dead)
        outcomes = await asyncio.gather(
            *(batches.opening(world.viewers[v], world.conversations[c], a) for v, c, a in asks),
            return_exceptions=True,
        )
    finally:
        await dead.dispose()
    assert single.value.code is ErrorCode.UNAVAILABLE
    assert all(isinstance(o, ChatError) for o in outcomes), outcomes
    assert {o.code for o in outcomes if isinstance(o, ChatError)} == {ErrorCode.UNAVAILABLE}
    # Not stuck after a failure: the next opening is asked anew.
    assert batches.queued == 0
    ctx, _ = await OpeningBatches(chat.db).opening(world.viewers["alice"], scene.conversation, 0)
    assert ctx.id == scene.conversation
