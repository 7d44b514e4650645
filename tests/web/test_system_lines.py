"""System lines (issue 11 item 4): a conversation that is ended or reopened,
or whose application changes status, says so in its timeline, as a MESSAGE
from PERSON kind `system` with its `event`, to staff and candidate alike,
live, in history and in catch-up; and such a line is nobody's news: not
unread, not the inbox preview, not "messaged", not searched, not in the
bell, never deleted for everyone, and it changes no rule of who may send.
Both backends."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from pypdf import PdfReader

from chatserver.store.tables import notifications
from tests.conftest import Scene
from tests.helpers import Host, audit_actions, count_rows, delete_message, error_of
from tests.ws_helpers import LiveServer, Socket, open_socket

SYSTEM = {"kind": "system", "id": "system", "name": "chatserver"}
ALICE = {"kind": "staff", "id": "alice", "name": "Alice Recruiter"}


async def sent(person: Any, conversation: str, body: str) -> dict[str, Any]:
    response = await person.send(conversation, body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def end(person: Any, conversation: str) -> None:
    response = await person.post(f"/api/conversations/{conversation}/end")
    assert response.status_code == 200, response.text


async def test_ending_twice_at_once_writes_one_line(scene: Scene, host: Host) -> None:
    """Two staff members (or two tabs) ending together: one line, one audit
    event, and both answered with the ended conversation."""
    conversation = f"/api/conversations/{scene.conversation}/end"
    answers = await asyncio.gather(
        *(person.post(conversation) for person in (scene.alice, scene.bob, scene.alice))
    )
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert {a.json()["state"] for a in answers} == {"ended"}
    lines = [m for m in await scene.alice.history(scene.conversation) if m["sender"] == SYSTEM]
    assert [line["event"]["type"] for line in lines] == ["ended"]
    assert (await audit_actions(host, "app-1")).count("conversation.ended") == 1


def is_line(message: dict[str, Any], seq: int, event: dict[str, Any], body: str) -> None:
    assert message["seq"] == seq, message
    assert message["sender"] == SYSTEM, message
    assert message["event"] == event, message
    assert message["body"] == body, message
    assert message["html"] == body, message
    assert (message["attachments"], message["deleted"], message["hidden"]) == ([], False, False)


async def frames_until_message(ws: Socket, seq: int) -> list[dict[str, Any]]:
    """Frames up to and including the `message` frame with this seq."""
    return await ws.collect(
        lambda got: bool(got) and got[-1]["type"] == "message" and got[-1]["message"]["seq"] == seq
    )


async def test_ending_writes_a_line_live_to_staff_and_candidate_and_in_history(
    server: LiveServer, scene: Scene
) -> None:
    hello = await sent(scene.alice, scene.conversation, "Hello Cara")
    ended = {"type": "ended", "by": ALICE}
    words = "Alice Recruiter ended the conversation."
    async with open_socket(server, scene.bob) as bob, open_socket(server, scene.cara) as cara:
        for ws in (bob, cara):
            assert (await ws.subscribe(scene.conversation, after=1))["last_seq"] == 1
        await end(scene.alice, scene.conversation)
        for ws, can_send in ((bob, True), (cara, False)):
            frame = await ws.next_of("message")
            is_line(frame["message"], 2, ended, words)
            # Then the state, each role with its own can_send.
            state = await ws.next_of("conversation")
            assert (state["state"], state["can_send"]) == ("ended", can_send)
    for person in (scene.alice, scene.cara):
        history = await person.history(scene.conversation)
        assert [m["seq"] for m in history] == [1, 2]
        assert history[0]["id"] == hello["id"]
        assert "event" not in history[0]  # people's messages carry none
        is_line(history[1], 2, ended, words)
    # Ending again changes nothing, so it writes nothing.
    await end(scene.bob, scene.conversation)
    assert len(await scene.alice.history(scene.conversation)) == 2


async def test_a_staff_message_that_reopens_comes_after_its_line(
    server: LiveServer, scene: Scene
) -> None:
    await sent(scene.alice, scene.conversation, "Hello Cara")
    await end(scene.alice, scene.conversation)
    async with open_socket(server, scene.cara) as cara, open_socket(server, scene.alice) as alice:
        for ws in (cara, alice):
            await ws.subscribe(scene.conversation, after=2)
        message = await sent(scene.bob, scene.conversation, "One more thing")
        assert message["seq"] == 4
        for ws in (cara, alice):
            frames = await frames_until_message(ws, 4)
            lines = [f["message"] for f in frames if f["type"] == "message"]
            assert [m["seq"] for m in lines] == [3, 4]
            bob = {"kind": "staff", "id": "bob", "name": "Bob Manager"}
            reopened = {"type": "reopened", "by": bob}
            is_line(lines[0], 3, reopened, "Bob Manager reopened the conversation.")
            assert lines[1]["id"] == message["id"]
            states = [f for f in frames if f["type"] == "conversation"]
            assert [s["state"] for s in states] == ["open"]
    # A catch-up from before the end replays both lines in order.
    async with open_socket(server, scene.cara) as cara:
        await cara.subscribe(scene.conversation, after=1)
        replay = [f["message"] for f in await frames_until_message(cara, 4)]
        assert [(m["seq"], m["sender"]["kind"]) for m in replay] == [
            (2, "system"),
            (3, "system"),
            (4, "staff"),
        ]
        assert [m["event"]["type"] for m in replay[:2]] == ["ended", "reopened"]


async def test_a_status_change_is_a_line_for_both_sides(
    server: LiveServer, scene: Scene, host: Host
) -> None:
    async with open_socket(server, scene.alice) as alice, open_socket(server, scene.cara) as cara:
        for ws in (alice, cara):
            await ws.subscribe(scene.conversation)
        await host.application("app-1", org="acme", candidate="cara", status="offered")
        event = {"type": "status_changed", "by": None, "from": "interviewing", "to": "offered"}
        words = "Application status changed from Interviewing to Offered."
        for ws in (alice, cara):
            is_line((await ws.next_of("message"))["message"], 1, event, words)
        # The same status again is no change and no line.
        await host.application("app-1", org="acme", candidate="cara", status="offered")
        await sent(scene.alice, scene.conversation, "Congratulations!")
        assert (await cara.next_of("message"))["message"]["seq"] == 2
    # The other organisation sees nothing of it.
    refused = await scene.mallory.client.get(f"/api/conversations/{scene.conversation}/messages")
    error_of(refused, 404, "not_found")


async def test_lines_are_nobodys_news(scene: Scene, host: Host, app: Any) -> None:
    """With only lines in it, a conversation is unread for nobody, has no
    preview, is not "messaged", is found by no word of a line, rings no bell,
    and is no `message.sent` in the audit trail."""
    await host.application("app-1", org="acme", candidate="cara", status="offered")
    await end(scene.alice, scene.conversation)
    assert [m["sender"]["kind"] for m in await scene.alice.history(scene.conversation)] == [
        "system",
        "system",
    ]
    for person in (scene.alice, scene.bob, scene.cara):
        [row] = [
            c for c in (await person.inbox())["conversations"] if c["id"] == scene.conversation
        ]
        assert (row["unread"], row["last_message"]) == (0, None)
        summary = await person.client.get(f"/api/conversations/{scene.conversation}")
        assert summary.json()["unread"] == 0
        assert summary.json()["last_message"] is None
    messaged = await scene.alice.inbox(filter="messaged")
    assert scene.conversation not in [c["id"] for c in messaged["conversations"]]
    for word in ("ended", "Offered", "status changed"):
        found = await scene.alice.inbox(q=word)
        assert scene.conversation not in [c["id"] for c in found["conversations"]], word
    assert await count_rows(app, notifications) == 0
    actions = await audit_actions(host, "app-1")
    assert "message.sent" not in actions
    assert actions.count("conversation.ended") == 1

    # A message after a line is the preview, and unread as always.
    hello = await sent(scene.alice, scene.conversation, "Still there?")
    await host.application("app-1", org="acme", candidate="cara", status="hired")
    [row] = [
        c for c in (await scene.cara.inbox())["conversations"] if c["id"] == scene.conversation
    ]
    assert row["unread"] == 1
    assert row["last_message"]["id"] == hello["id"]
    [row] = [c for c in (await scene.bob.inbox())["conversations"] if c["id"] == scene.conversation]
    assert (row["unread"], row["last_message"]["id"]) == (0, hello["id"])
    assert scene.conversation in [
        c["id"] for c in (await scene.alice.inbox(filter="messaged"))["conversations"]
    ]
    # Read up to the last line: nothing is unread.
    last = (await scene.cara.history(scene.conversation))[-1]
    assert last["sender"] == SYSTEM
    read = await scene.cara.post(f"/api/conversations/{scene.conversation}/read", {"seq": 5})
    assert read.status_code == 204
    summary = await scene.cara.client.get(f"/api/conversations/{scene.conversation}")
    assert summary.json()["unread"] == 0


async def test_lines_change_no_rule_of_who_may_send(scene: Scene, host: Host) -> None:
    """A line is not a staff message: a candidate still may not write first
    until the status lets them, nor into an ended conversation."""
    await host.application("app-1", org="acme", candidate="cara", status="submitted")
    await host.application("app-1", org="acme", candidate="cara", status="shortlisted")
    error_of(await scene.cara.send(scene.conversation, "Hi?"), 403, "not_allowed")
    await host.application("app-1", org="acme", candidate="cara", status="interviewing")
    first = await sent(scene.cara, scene.conversation, "Hello, may I ask something?")
    assert first["seq"] == 4  # after three status lines
    await end(scene.alice, scene.conversation)
    error_of(await scene.cara.send(scene.conversation, "Hello?"), 409, "conversation_ended")


async def test_a_line_is_nobodys_to_delete_for_everyone(scene: Scene) -> None:
    await end(scene.alice, scene.conversation)
    [line] = await scene.alice.history(scene.conversation)
    for person in (scene.alice, scene.cara):
        error_of(await delete_message(person, line["id"], "everyone"), 403, "forbidden")
    # Each may tidy it away for themselves, like any message.
    assert (await delete_message(scene.cara, line["id"], "me")).status_code == 204
    [hidden] = await scene.cara.history(scene.conversation)
    assert (hidden["hidden"], hidden["body"], "event" in hidden) == (True, "", False)
    [shown] = await scene.alice.history(scene.conversation)
    assert shown["event"]["type"] == "ended"


async def test_the_transcript_tells_each_event_once(scene: Scene, host: Host) -> None:
    """The lines' events come into the transcript from the audit trail, in
    the lines' words, once each (the lines themselves are not repeated),
    in the HTML page and the PDF alike."""
    await sent(scene.alice, scene.conversation, "Hello Cara")
    await host.application("app-1", org="acme", candidate="cara", status="offered")
    await end(scene.alice, scene.conversation)
    await sent(scene.bob, scene.conversation, "One more thing")
    history = await scene.cara.history(scene.conversation)
    words = [m["body"] for m in history if m["sender"]["kind"] == "system"]
    assert words == [
        "Application status changed from Interviewing to Offered.",
        "Alice Recruiter ended the conversation.",
        "Bob Manager reopened the conversation.",
    ]
    for person in (scene.alice, scene.cara):
        page = await person.client.get(f"/api/conversations/{scene.conversation}/transcript")
        assert page.status_code == 200
        for sentence in words:
            assert page.text.count(sentence) == 1, sentence
        assert "chatserver" not in page.text.split("<body", 1)[1]  # no system sender
        pdf = await person.client.get(f"/api/conversations/{scene.conversation}/transcript.pdf")
        assert pdf.status_code == 200
        text = " ".join(
            " ".join((p.extract_text() or "").split())
            for p in PdfReader(io.BytesIO(pdf.content)).pages
        )
        for sentence in words:
            assert text.count(sentence) == 1, sentence
