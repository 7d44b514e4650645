"""SPEC sections 1 and 4: another organisation's (or another candidate's)
things answer exactly as missing ones — no data, and nothing that reveals
whether they exist."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Scene
from tests.helpers import (
    Host,
    Person,
    delete_message,
    error_of,
    new_client_id,
    open_link,
    sign_in_candidate,
    upload,
)
from tests.helpers import signed_in as person_in
from tests.web.test_attachments import png

MISSING = "0123456789abcdef"


def conversation_calls(conversation: str) -> list[tuple[str, str, dict[str, Any]]]:
    base = f"/api/conversations/{conversation}"
    return [
        ("GET", base, {}),
        ("GET", f"{base}/messages", {}),
        ("POST", f"{base}/messages", {"json": {"client_id": new_client_id(), "body": "Hi"}}),
        ("POST", f"{base}/read", {"json": {"seq": 1}}),
        ("POST", f"{base}/end", {}),
        ("POST", f"{base}/archive", {}),
        ("POST", f"{base}/unarchive", {}),
    ]


async def call(person: Person, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
    return await person.client.request(method, path, headers=person.csrf, **kwargs)


async def assert_like_missing(person: Person, target: str) -> None:
    """Every conversation endpoint answers for `target` as for a missing id."""
    for (method, path, kwargs), (_, missing_path, _) in zip(
        conversation_calls(target), conversation_calls(MISSING), strict=True
    ):
        if person.me["kind"] == "candidate" and path.endswith(("/archive", "/unarchive")):
            continue  # refused to candidates for any id, before tenancy
        found = await call(person, method, path, kwargs)
        missing = await call(person, method, missing_path, kwargs)
        error_of(found, 404, "not_found")
        assert found.json() == missing.json(), path
        assert found.headers.get("content-type") == missing.headers.get("content-type")


async def test_another_organisations_conversation_is_missing(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Confidential")
    await assert_like_missing(scene.mallory, scene.conversation)
    await assert_like_missing(scene.alice, scene.other_conversation)
    history = await scene.alice.history(scene.conversation)
    assert [(m["seq"], m["body"]) for m in history] == [(1, "Confidential")]
    view = (await scene.alice.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert view["state"] == "open"


async def test_another_organisations_message_is_missing(scene: Scene) -> None:
    sent = (await scene.alice.send(scene.conversation, "Confidential")).json()
    for scope in ("me", "everyone"):
        foreign = await delete_message(scene.mallory, sent["id"], scope)
        missing = await delete_message(scene.mallory, MISSING, scope)
        error_of(foreign, 404, "not_found")
        assert foreign.json() == missing.json()
    [kept] = await scene.cara.history(scene.conversation)
    assert (kept["body"], kept["deleted"]) == ("Confidential", False)


async def test_another_organisations_attachment_is_missing(scene: Scene) -> None:
    upload = await scene.alice.client.post(
        "/api/attachments", files={"file": ("offer.txt", b"Salary 40k")}, headers=scene.alice.csrf
    )
    file_id = upload.json()["id"]
    sent = await scene.alice.send(scene.conversation, "Offer", attachments=[file_id])
    assert sent.status_code == 201, sent.text
    foreign = await scene.mallory.client.get(f"/api/attachments/{file_id}")
    missing = await scene.mallory.client.get(f"/api/attachments/{MISSING}")
    error_of(foreign, 404, "not_found")
    assert foreign.json() == missing.json()
    stolen = await scene.mallory.send(scene.other_conversation, "Mine", attachments=[file_id])
    error_of(stolen, 404, "not_found")


async def test_the_inbox_and_search_stay_in_the_organisation(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Interview on Tuesday")
    listed = await scene.mallory.inbox()
    assert [c["id"] for c in listed["conversations"]] == [scene.other_conversation]
    for q in ("Cara", "Tuesday", "Mathematics"):
        found = await scene.mallory.inbox(q=q, filter="all")
        assert all(c["id"] != scene.conversation for c in found["conversations"])
    assert (await scene.mallory.client.get("/api/notifications")).json()["unread"] == 0


async def test_a_candidate_sees_only_their_applications_conversations(
    scene: Scene, host: Host, new_client: Any
) -> None:
    await scene.alice.send(scene.conversation, "For Cara only")
    dan_browser = new_client()
    await open_link(dan_browser, await host.candidate_link("app-9"))
    dan = await person_in(dan_browser)
    await assert_like_missing(dan, scene.conversation)
    await assert_like_missing(scene.cara, scene.other_conversation)

    unopened = await host.application("app-2", candidate="cara", job="acme-job-2")
    await assert_like_missing(scene.cara, unopened["conversation_id"])
    assert [c["id"] for c in (await dan.inbox())["conversations"]] == [scene.other_conversation]


async def test_a_reassigned_application_leaves_the_old_candidate_out(
    scene: Scene, host: Host
) -> None:
    await host.application("app-1", candidate="zed", status="interviewing")
    await assert_like_missing(scene.cara, scene.conversation)
    assert (await scene.cara.inbox())["conversations"] == []


async def test_the_next_candidate_sees_nothing_of_what_was_said_with_the_previous_one(
    scene: Scene, host: Host, new_client: Any
) -> None:
    """History, inbox, unread, search, bell and transcript start for Zed
    where the application came to him; seqs stay gapless (hidden
    placeholders); staff still see everything."""
    await scene.alice.send(scene.conversation, "Hi Cara, could you call me?")
    await scene.cara.send(scene.conversation, "My private number is 555-0100")
    await scene.cara.post(f"/api/conversations/{scene.conversation}/read", {"seq": 2})
    await host.application("app-1", candidate="zed", status="interviewing")
    zed = await sign_in_candidate(host, new_client(), "app-1")

    earlier = await zed.history(scene.conversation)
    assert [(m["seq"], m["hidden"], m["body"], m["attachments"]) for m in earlier] == [
        (1, True, "", []),
        (2, True, "", []),
    ]
    # Not even who the earlier candidate was, nor how far they read.
    assert earlier[1]["sender"] == {"kind": "candidate", "id": "", "name": ""}
    summary = (await zed.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert "cara" not in [r["id"] for r in summary["reads"]]
    staffs = (await scene.bob.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert "cara" in [r["id"] for r in staffs["reads"]]
    [row] = (await zed.inbox())["conversations"]
    assert (row["unread"], row["last_message"]) == (0, None)
    assert (await zed.inbox(q="555"))["conversations"] == []
    assert (await zed.client.get("/api/notifications")).json() == {"notifications": [], "unread": 0}
    transcript = await zed.client.get(f"/api/conversations/{scene.conversation}/transcript")
    assert transcript.status_code == 200
    assert "555-0100" not in transcript.text
    assert "could you call me" not in transcript.text

    await scene.alice.send(scene.conversation, "Hello Zed")
    [row] = (await zed.inbox())["conversations"]
    assert (row["unread"], row["last_message"]["body"]) == (1, "Hello Zed")
    assert [m["body"] for m in await zed.history(scene.conversation) if not m["hidden"]] == [
        "Hello Zed"
    ]
    assert [m["body"] for m in await scene.bob.history(scene.conversation)] == [
        "Hi Cara, could you call me?",
        "My private number is 555-0100",
        "Hello Zed",
    ]


async def sent_with_file(person: Person, conversation: str, name: str, data: bytes) -> str:
    """`person` sends a message with one file; the file's id."""
    uploaded = await upload(person, name, data)
    assert uploaded.status_code == 201, uploaded.text
    file_id = str(uploaded.json()["id"])
    sent = await person.send(conversation, name, attachments=[file_id])
    assert sent.status_code == 201, sent.text
    return file_id


async def test_files_on_messages_hidden_from_a_reader_are_missing_to_them(
    scene: Scene, host: Host, new_client: Any
) -> None:
    """As history shows such a message without its files, its files answer
    as missing ones, by their ids too (a link kept in a shared browser's
    history): the previous candidate's for the next one, and one's own
    deleted for oneself. Staff, and the others, still have them."""
    offer = await sent_with_file(scene.alice, scene.conversation, "offer.txt", b"Salary 40k")
    passport = await sent_with_file(scene.cara, scene.conversation, "passport.png", png())
    await host.application("app-1", candidate="zed", status="interviewing")
    zed = await sign_in_candidate(host, new_client(), "app-1")
    welcome = await sent_with_file(scene.alice, scene.conversation, "welcome.txt", b"Hi Zed")

    missing = await zed.client.get(f"/api/attachments/{MISSING}")
    for path in (
        f"/api/attachments/{offer}",
        f"/api/attachments/{passport}",
        f"/api/attachments/{passport}/thumbnail",
    ):
        found = await zed.client.get(path)
        error_of(found, 404, "not_found")
        assert found.json() == missing.json(), path
        assert (await scene.bob.client.get(path)).status_code == 200, path
    assert (await zed.client.get(f"/api/attachments/{welcome}")).text == "Hi Zed"

    [message] = [
        m for m in await scene.alice.history(scene.conversation) if m["body"] == "offer.txt"
    ]
    assert (await delete_message(scene.alice, message["id"])).status_code == 204
    error_of(await scene.alice.client.get(f"/api/attachments/{offer}"), 404, "not_found")
    assert (await scene.bob.client.get(f"/api/attachments/{offer}")).text == "Salary 40k"


async def test_malformed_ids_answer_as_missing(scene: Scene) -> None:
    for bad in ("nul%00byte", "new%0Aline", "x" * 65, "semi;colon"):
        await assert_like_missing(scene.alice, bad)
        error_of(await delete_message(scene.alice, bad, "me"), 404, "not_found")
        error_of(await scene.alice.client.get(f"/api/attachments/{bad}"), 404, "not_found")
    for bad in ("nul\x00byte", "new\nline"):
        sent = await scene.alice.send(scene.conversation, "Hi", attachments=[bad])
        error_of(sent, 404, "not_found")
    assert await scene.alice.history(scene.conversation) == []
