"""Unread counts per viewer and conversation (issue 8 item 1), "mark as
unread" (issue 11 item 10) and the `inbox` frames they produce, on both
backends. The model-based test (test_inbox_model.py) covers the same
ground at random; these are the cases by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from chatserver.chat import events
from tests.conftest import Scene
from tests.helpers import (
    Host,
    Person,
    delete_message,
    error_of,
    publish_about,
    sign_in_candidate,
)
from tests.ws_helpers import LiveServer, Socket, open_socket

Browser = Callable[[], httpx.AsyncClient]


async def unread_of(person: Person, **params: Any) -> dict[str, int]:
    listed = await person.inbox(**params)
    return {c["application_id"]: c["unread"] for c in listed["conversations"]}


async def replies(scene: Scene, host: Host, new_client: Browser) -> dict[str, str]:
    """Three interviewing applications in Acme, each with one reply of its
    candidate's; their conversations by application id."""
    conversations = {"app-1": scene.conversation}
    await scene.cara.send(scene.conversation, "Hello from Cara")
    for application_id, candidate in (("app-2", "erin"), ("app-3", "finn")):
        created = await host.application(
            application_id, candidate=candidate, job=f"job-{candidate}", status="interviewing"
        )
        conversations[application_id] = created["conversation_id"]
        person = await sign_in_candidate(host, new_client(), application_id)
        assert (await person.send(created["conversation_id"], "Hello")).status_code == 201
    return conversations


async def read(person: Person, conversation: str, seq: int) -> None:
    response = await person.post(f"/api/conversations/{conversation}/read", {"seq": seq})
    assert response.status_code == 204, response.text


async def mark_unread(person: Person, conversation: str) -> None:
    response = await person.post(f"/api/conversations/{conversation}/unread")
    assert response.status_code == 204, response.text


# -- unread counts -------------------------------------------------------------------


async def test_reading_one_conversation_leaves_the_others_unread(
    scene: Scene, host: Host, new_client: Browser
) -> None:
    """The reported bug: one read position applied to every row (SQLite),
    and a 500 once two conversations were read (PostgreSQL)."""
    conversations = await replies(scene, host, new_client)
    everything = {"app-1": 1, "app-2": 1, "app-3": 1}
    assert await unread_of(scene.alice) == everything

    await read(scene.alice, conversations["app-1"], 1)
    assert await unread_of(scene.alice) == {"app-1": 0, "app-2": 1, "app-3": 1}
    assert set(await unread_of(scene.alice, filter="unread")) == {"app-2", "app-3"}

    await read(scene.alice, conversations["app-2"], 1)
    for sort in ("unread", "newest", "oldest"):
        assert await unread_of(scene.alice, sort=sort) == {"app-1": 0, "app-2": 0, "app-3": 1}
    assert await unread_of(scene.alice, filter="unread") == {"app-3": 1}
    assert (await scene.alice.inbox(sort="unread"))["conversations"][0]["application_id"] == (
        "app-3"
    )
    # Bob reads nothing: his counts are his own.
    assert await unread_of(scene.bob) == everything
    summary = (await scene.alice.client.get(f"/api/conversations/{conversations['app-3']}")).json()
    assert summary["unread"] == 1


async def test_unread_counts_the_other_sides_messages_the_reader_can_see(scene: Scene) -> None:
    sent = [(await scene.cara.send(scene.conversation, f"c{n}")).json() for n in range(3)]
    await scene.alice.send(scene.conversation, "Alice writes")
    # A colleague's message is not news for Bob; the candidate's three are.
    assert await unread_of(scene.bob) == {"app-1": 3}
    assert await unread_of(scene.cara) == {"app-1": 1}

    assert (await delete_message(scene.cara, sent[0]["id"], "everyone")).status_code == 204
    assert await unread_of(scene.bob) == {"app-1": 2}
    assert (await delete_message(scene.bob, sent[1]["id"], "me")).status_code == 204
    assert await unread_of(scene.bob) == {"app-1": 1}
    assert await unread_of(scene.alice) == {"app-1": 2}

    await read(scene.bob, scene.conversation, 2)
    assert await unread_of(scene.bob) == {"app-1": 1}
    await read(scene.bob, scene.conversation, 99)  # past the end: up to the last
    assert await unread_of(scene.bob) == {"app-1": 0}
    await read(scene.bob, scene.conversation, 1)  # never back
    assert await unread_of(scene.bob) == {"app-1": 0}


# -- mark as unread ------------------------------------------------------------------


async def test_marking_as_unread_brings_back_the_newest_candidate_message(
    scene: Scene, host: Host, new_client: Browser
) -> None:
    conversations = await replies(scene, host, new_client)
    await scene.cara.send(scene.conversation, "A second line")
    for conversation in conversations.values():
        await read(scene.alice, conversation, 3)
    assert await unread_of(scene.alice, filter="unread") == {}

    await mark_unread(scene.alice, conversations["app-2"])
    assert await unread_of(scene.alice, filter="unread") == {"app-2": 1}
    assert await unread_of(scene.alice) == {"app-1": 0, "app-2": 1, "app-3": 0}
    assert (await scene.alice.inbox(sort="unread"))["conversations"][0]["application_id"] == (
        "app-2"
    )
    # Only the newest candidate message counts again, however many there are.
    await mark_unread(scene.alice, scene.conversation)
    assert (await unread_of(scene.alice))["app-1"] == 1
    # Marking again changes nothing; reading clears it as usual.
    await mark_unread(scene.alice, scene.conversation)
    assert (await unread_of(scene.alice))["app-1"] == 1
    await read(scene.alice, scene.conversation, 2)
    assert (await unread_of(scene.alice))["app-1"] == 0
    # Alice's mark is hers alone.
    assert await unread_of(scene.bob) == {"app-1": 2, "app-2": 1, "app-3": 1}


async def test_marking_as_unread_never_moves_forward_or_invents_news(scene: Scene) -> None:
    # Nothing from the candidate yet: nothing to mark.
    await scene.alice.send(scene.conversation, "Hello")
    await mark_unread(scene.alice, scene.conversation)
    assert await unread_of(scene.alice) == {"app-1": 0}
    # Two unread candidate messages stay two: marking never moves forward.
    await scene.cara.send(scene.conversation, "one")
    await scene.cara.send(scene.conversation, "two")
    await mark_unread(scene.alice, scene.conversation)
    assert await unread_of(scene.alice) == {"app-1": 2}


async def test_marking_as_unread_skips_what_the_reader_cannot_see(scene: Scene) -> None:
    first = (await scene.cara.send(scene.conversation, "first")).json()
    second = (await scene.cara.send(scene.conversation, "second")).json()
    await read(scene.alice, scene.conversation, 2)
    assert (await delete_message(scene.cara, second["id"], "everyone")).status_code == 204
    await mark_unread(scene.alice, scene.conversation)
    # The deleted one does not count; the one before it is unread again.
    [row] = (await scene.alice.inbox())["conversations"]
    assert row["unread"] == 1
    assert row["last_message"]["seq"] == 2
    assert row["last_message"]["deleted"] is True
    await read(scene.alice, scene.conversation, 2)
    assert (await delete_message(scene.alice, first["id"], "me")).status_code == 204
    await mark_unread(scene.alice, scene.conversation)
    assert await unread_of(scene.alice) == {"app-1": 0}


async def test_only_staff_of_the_organisation_mark_as_unread(scene: Scene) -> None:
    await scene.cara.send(scene.conversation, "Hello")
    await read(scene.cara, scene.conversation, 1)
    path = f"/api/conversations/{scene.conversation}/unread"
    error_of(await scene.cara.post(path), 403, "forbidden")
    # Another organisation's conversation answers as missing ones do.
    error_of(await scene.mallory.post(path), 404, "not_found")
    error_of(await scene.alice.post("/api/conversations/nope/unread"), 404, "not_found")
    error_of(
        await scene.alice.post(f"/api/conversations/{scene.other_conversation}/unread"),
        404,
        "not_found",
    )
    error_of(await scene.alice.post("/api/conversations/%00/unread"), 404, "not_found")
    # Without the CSRF header nothing moves.
    await read(scene.alice, scene.conversation, 1)
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        response = await scene.alice.client.post(path, headers=headers)
        error_of(response, 403, "forbidden")
    assert await unread_of(scene.alice) == {"app-1": 0}


# -- inbox frames -------------------------------------------------------------------


async def follow(app: Any, sockets: list[Socket], org: str, host: Host) -> None:
    """Follow the inbox on each socket and wait until every feed is live.

    The follow has no answer, so changes of a probe conversation are
    published until each socket has seen one; then one change of a marker
    conversation, read up to on every socket, leaves no probe frame behind.
    Both are applications of their own, made before anyone follows.
    """
    probe = (await host.application(f"{org}-probe", org=org, candidate="pat"))["conversation_id"]
    marker = (await host.application(f"{org}-marker", org=org, candidate="max"))["conversation_id"]
    for ws in sockets:
        await ws.send({"type": "inbox"})
    chat = app.state.services.chat
    waiting = list(sockets)
    for _ in range(50):
        await publish_about(chat, probe, events.inbox_changed(probe))
        for ws in list(waiting):
            try:
                await ws.next_of("inbox", within=0.2)
            except TimeoutError:
                continue
            waiting.remove(ws)
        if not waiting:
            break
    assert not waiting, "the inbox feed never became live"
    await publish_about(chat, marker, events.inbox_changed(marker))
    for ws in sockets:
        while (await ws.next_of("inbox"))["conversation"] != marker:
            pass


async def test_inbox_frames_after_read_and_mark_unread(
    app: Any, server: LiveServer, scene: Scene, host: Host
) -> None:
    sent = (await scene.cara.send(scene.conversation, "Is the job still open?")).json()
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.bob) as bob:
        await follow(app, [alice, bob], "acme", host)
        await read(scene.alice, scene.conversation, 1)
        expected = {
            "type": "inbox",
            "conversation": scene.conversation,
            "unread": 0,
            "last_message": sent,
            "state": "open",
            "status": "interviewing",
            "candidate": {"id": "cara", "name": "Cara"},
        }
        assert await alice.next_of("inbox") == expected
        assert await bob.next_of("inbox") == {**expected, "unread": 1}

        await mark_unread(scene.alice, scene.conversation)
        assert await alice.next_of("inbox") == {**expected, "unread": 1}
        assert await bob.next_of("inbox") == {**expected, "unread": 1}
        # Marking what is unread already, or reading nothing new, is no change.
        await mark_unread(scene.alice, scene.conversation)
        await read(scene.bob, scene.conversation, 0)
        assert [f for f in await alice.quiet() if f["type"] == "inbox"] == []


async def test_inbox_frames_show_each_viewers_newest_visible_message(
    app: Any, server: LiveServer, scene: Scene, host: Host
) -> None:
    first = (await scene.cara.send(scene.conversation, "First")).json()
    secret = (await scene.cara.send(scene.conversation, "My salary was 12,345")).json()
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.bob) as bob:
        await follow(app, [alice, bob], "acme", host)
        # Bob deletes it for himself: his row shows the message before it.
        assert (await delete_message(scene.bob, secret["id"], "me")).status_code == 204
        bobs = await bob.next_of("inbox")
        assert bobs["last_message"] == first
        assert bobs["unread"] == 1
        assert (await alice.next_of("inbox"))["last_message"] == secret
        # Cara deletes it for everyone: a placeholder, its text nowhere.
        assert (await delete_message(scene.cara, secret["id"], "everyone")).status_code == 204
        alices = await alice.next_of("inbox")
        assert alices["last_message"]["seq"] == 2
        assert alices["last_message"]["deleted"] is True
        assert alices["unread"] == 1
        assert (await bob.next_of("inbox"))["last_message"] == first
        for frame in (alices, bobs):
            assert "12,345" not in str(frame)


async def test_inbox_frames_after_end_reopen_and_status_changes(
    app: Any, server: LiveServer, scene: Scene, host: Host
) -> None:
    async with (
        open_socket(server, scene.alice) as alice,
        open_socket(server, scene.mallory) as mallory,
    ):
        await follow(app, [alice], "acme", host)
        await follow(app, [mallory], "globex", host)
        await scene.bob.post(f"/api/conversations/{scene.conversation}/end")
        ended = await alice.next_of("inbox")
        assert (ended["state"], ended["status"], ended["last_message"]) == (
            "ended",
            "interviewing",
            None,
        )
        await host.application("app-1", org="acme", candidate="cara", status="offered")
        changed = await alice.next_of("inbox")
        assert (changed["state"], changed["status"]) == ("ended", "offered")
        reopening = (await scene.bob.send(scene.conversation, "One more thing")).json()
        reopened = await alice.next_of("inbox")
        assert (reopened["state"], reopened["last_message"]) == ("open", reopening)
        # The same status again is no change; a new application is a new row.
        await host.application("app-1", org="acme", candidate="cara", status="offered")
        created = await host.application("app-2", org="acme", candidate="erin")
        row = await alice.next_of("inbox")
        assert (row["conversation"], row["status"], row["unread"]) == (
            created["conversation_id"],
            "submitted",
            0,
        )
        # Nothing of Acme's ever reaches Globex's inbox.
        assert [f for f in await mallory.quiet() if f["type"] == "inbox"] == []
