"""Issue 11 item 6: a calm bell. One entry per conversation with a count,
cleared by reading the conversation, one entry (or all) marked read without
a read receipt, and nothing about another organisation's conversations.
The entries are derived (issue 10), so these are the whole contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Scene
from tests.helpers import Host, Person, error_of, sign_in_candidate
from tests.ws_helpers import LiveServer, Subscriptions, open_socket


async def bell(person: Person) -> dict[str, Any]:
    response = await person.client.get("/api/notifications")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_messages_of_one_conversation_make_one_entry_with_a_count(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Hello Cara")
    for n in range(3):
        assert (await scene.cara.send(scene.conversation, f"Answer {n}")).status_code == 201
    for staff in (scene.alice, scene.bob):
        found = await bell(staff)
        assert found["unread"] == 1
        [entry] = found["notifications"]
        assert (entry["conversation"], entry["count"], entry["read"]) == (
            scene.conversation,
            3,
            False,
        )
        assert entry["text"].startswith("3 new messages from Cara")
    assert await bell(scene.mallory) == {"notifications": [], "unread": 0}
    [candidate_entry] = (await bell(scene.cara))["notifications"]
    assert candidate_entry["count"] == 1
    assert candidate_entry["text"].startswith("New message from Alice Recruiter about ")


async def test_reading_the_conversation_clears_its_entry(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Hello Cara")
    for n in range(3):
        await scene.cara.send(scene.conversation, f"Answer {n}")
    read = await scene.alice.post(f"/api/conversations/{scene.conversation}/read", {"seq": 3})
    assert read.status_code == 204
    [entry] = (await bell(scene.alice))["notifications"]
    assert (entry["count"], entry["read"]) == (1, False)
    await scene.alice.post(f"/api/conversations/{scene.conversation}/read", {"seq": 4})
    found = await bell(scene.alice)
    assert found["unread"] == 0
    assert [(e["count"], e["read"]) for e in found["notifications"]] == [(0, True)]
    # Bob has not read it: his entry is untouched.
    assert (await bell(scene.bob))["unread"] == 1


async def test_one_entry_is_marked_read_without_a_read_receipt(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Hello Cara")
    await scene.cara.send(scene.conversation, "Hello")
    marked = await scene.bob.post(f"/api/notifications/{scene.conversation}/read")
    assert marked.status_code == 204
    found = await bell(scene.bob)
    assert found["unread"] == 0
    assert [e["read"] for e in found["notifications"]] == [True]
    # The conversation itself is still unread for Bob, and nobody saw him read it.
    [row] = (await scene.bob.inbox())["conversations"]
    assert row["unread"] == 1
    summary = (await scene.cara.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert "bob" not in [r["id"] for r in summary["reads"]]
    # A later message makes the entry new again, counting only what came after.
    await scene.cara.send(scene.conversation, "One more thing")
    [entry] = (await bell(scene.bob))["notifications"]
    assert (entry["count"], entry["read"]) == (1, False)


async def test_archiving_quiets_the_entry_until_the_candidate_writes_again(scene: Scene) -> None:
    """What the bell counts is in the Unread filter: archiving takes a
    conversation out of it, so its entry stops counting, for the archiver
    only; a reply brings the conversation back and counts (only itself)."""
    await scene.alice.send(scene.conversation, "Hello Cara")
    for n in range(2):
        await scene.cara.send(scene.conversation, f"Answer {n}")
    archive = f"/api/conversations/{scene.conversation}/archive"
    assert (await scene.bob.post(archive)).status_code == 204
    found = await bell(scene.bob)
    assert found["unread"] == 0
    assert [(e["count"], e["read"]) for e in found["notifications"]] == [(0, True)]
    assert (await scene.bob.inbox(filter="unread"))["conversations"] == []
    assert (await bell(scene.alice))["unread"] == 1

    await scene.cara.send(scene.conversation, "Are you there?")
    [entry] = (await bell(scene.bob))["notifications"]
    assert (entry["count"], entry["read"]) == (1, False)
    [row] = (await scene.bob.inbox(filter="unread"))["conversations"]
    assert row["id"] == scene.conversation

    # Archived again, then undone: the entry counts as it did before.
    await scene.bob.post(archive)
    assert (await bell(scene.bob))["unread"] == 0
    await scene.bob.post(f"/api/conversations/{scene.conversation}/unarchive")
    [entry] = (await bell(scene.bob))["notifications"]
    assert (entry["count"], entry["read"]) == (3, False)


async def test_marking_all_read_and_other_tenants_entries(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Hello Cara")
    await scene.cara.send(scene.conversation, "Hello")
    # Another organisation's conversation: accepted, changes nothing anywhere.
    elsewhere = await scene.mallory.post(f"/api/notifications/{scene.conversation}/read")
    assert elsewhere.status_code == 204
    assert (await bell(scene.alice))["unread"] == 1
    error_of(await scene.alice.post("/api/notifications/not%20an%20id/read"), 422, "invalid")
    assert (await scene.alice.post("/api/notifications/read")).status_code == 204
    assert (await bell(scene.alice))["unread"] == 0
    assert (await bell(scene.bob))["unread"] == 1


async def test_a_candidate_hears_only_of_the_applications_opened_in_this_session(
    scene: Scene,
    host: Host,
    server: LiveServer,
    subscriptions: Subscriptions,
    new_client: Callable[[], httpx.AsyncClient],
) -> None:
    """Cara also applied to Globex, but this session came from Acme's link:
    neither her bell nor her socket tells it anything of Globex (a candidate
    sees the conversations of the links opened in the session)."""
    globex = await host.application("app-8", org="globex", candidate="cara", status="interviewing")
    async with open_socket(server, scene.cara) as cara:
        await subscriptions.live("org:")
        sent = await scene.mallory.send(globex["conversation_id"], "Hello from Globex")
        assert sent.status_code == 201, sent.text
        await scene.alice.send(scene.conversation, "Hello from Acme")
        note = (await cara.next_of("notification"))["notification"]
        assert note["conversation"] == scene.conversation
    found = await bell(scene.cara)
    assert [entry["conversation"] for entry in found["notifications"]] == [scene.conversation]
    assert found["unread"] == 1
    # Marking everything read marks what this session sees, and only that.
    assert (await scene.cara.post("/api/notifications/read")).status_code == 204
    assert (await bell(scene.cara))["unread"] == 0
    from_globex = await sign_in_candidate(host, new_client(), "app-8")
    found = await bell(from_globex)
    assert [entry["conversation"] for entry in found["notifications"]] == [
        globex["conversation_id"]
    ]
    assert found["unread"] == 1
