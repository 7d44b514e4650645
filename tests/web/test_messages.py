"""SPEC sections 2 and 5a: sending (with idempotent retries), history
paging, delete for me / for everyone, and read positions."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from chatserver.store.tables import messages
from tests.conftest import Scene
from tests.helpers import (
    Host,
    Person,
    audit_actions,
    count_rows,
    delete_message,
    error_of,
    new_client_id,
    other_app,
)


async def send_many(scene: Scene, count: int) -> list[dict[str, Any]]:
    sent = []
    for i in range(count):
        response = await scene.alice.send(scene.conversation, f"Message {i + 1}")
        assert response.status_code == 201, response.text
        sent.append(response.json())
    return sent


async def unread_of(person: Any, conversation: str) -> int:
    return int((await person.client.get(f"/api/conversations/{conversation}")).json()["unread"])


async def test_a_sent_message_is_the_spec_message_object(scene: Scene) -> None:
    client_id = new_client_id()
    response = await scene.alice.send(scene.conversation, "Hi *Cara*", client_id=client_id)
    assert response.status_code == 201, response.text
    message = response.json()
    assert set(message) >= {"id", "conversation", "seq", "sender", "body", "html", "created_at"}
    assert message["conversation"] == scene.conversation
    assert message["seq"] == 1
    assert message["sender"] == {"kind": "staff", "id": "alice", "name": "Alice Recruiter"}
    assert message["body"] == "Hi *Cara*"
    assert message["html"] == "<p>Hi <em>Cara</em></p>"
    assert message["attachments"] == []
    assert (message["deleted"], message["hidden"]) == (False, False)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", message["created_at"])
    assert await scene.cara.history(scene.conversation) == [message]


async def test_a_repeated_client_id_returns_the_original(
    scene: Scene, host: Host, app: Any
) -> None:
    client_id = new_client_id()
    first = await scene.alice.send(scene.conversation, "Once", client_id=client_id)
    retry = await scene.alice.send(scene.conversation, "Once (retry)", client_id=client_id)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert await count_rows(app, messages) == 1

    other = await host.application("app-2", candidate="erin")
    elsewhere = await scene.alice.send(other["conversation_id"], "Once", client_id=client_id)
    error_of(elsewhere, 422, "invalid")
    # Client ids are per sender: another person may use the same one.
    assert (await scene.bob.send(scene.conversation, "Hi", client_id=client_id)).status_code == 201
    assert await count_rows(app, messages) == 2


async def test_concurrent_retries_store_one_message(scene: Scene, app: Any) -> None:
    client_id = new_client_id()
    responses = await asyncio.gather(
        *(scene.cara.send(scene.conversation, "Hello", client_id=client_id) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_rows(app, messages) == 1


async def test_a_send_is_validated(scene: Scene) -> None:
    conversation = scene.conversation
    error_of(await scene.alice.send(conversation, "x" * 10_001), 413, "too_large")
    six = [f"a{i}" for i in range(6)]
    error_of(await scene.alice.send(conversation, "files", attachments=six), 422, "invalid")
    for bad in (
        {"client_id": "not-a-uuid", "body": "Hi"},
        {"client_id": 12, "body": "Hi"},
        {"body": "Hi"},
        {"client_id": new_client_id(), "body": "   "},
        {"client_id": new_client_id()},
        {"client_id": new_client_id(), "body": ["Hi"]},
        {"client_id": new_client_id(), "body": "Hi", "attachments": "a1"},
        {"client_id": new_client_id(), "body": "Hi", "attachments": [1]},
        {"client_id": new_client_id(), "body": "NUL \x00 byte"},
    ):
        response = await scene.alice.post(f"/api/conversations/{conversation}/messages", bad)
        error_of(response, 422, "invalid")
    not_json = await scene.alice.client.post(
        f"/api/conversations/{conversation}/messages", content=b"hello", headers=scene.alice.csrf
    )
    error_of(not_json, 400, "invalid")
    assert await scene.alice.history(conversation) == []

    longest = await scene.alice.send(conversation, "x" * 10_000)
    assert longest.status_code == 201
    error_of(await scene.alice.send("no-such-conversation", "Hi"), 404, "not_found")


async def test_history_pages_back_from_the_newest(scene: Scene) -> None:
    await send_many(scene, 60)
    latest = await scene.cara.history(scene.conversation)
    assert [m["seq"] for m in latest] == list(range(11, 61))
    older = await scene.cara.history(scene.conversation, before=11)
    assert [m["seq"] for m in older] == list(range(1, 11))
    assert await scene.cara.history(scene.conversation, before=1) == []
    page = await scene.cara.history(scene.conversation, before=31, limit=5)
    assert [m["seq"] for m in page] == [26, 27, 28, 29, 30]
    everything = await scene.cara.history(scene.conversation, limit=200)
    assert [m["seq"] for m in everything] == list(range(1, 61))

    url = f"/api/conversations/{scene.conversation}/messages"
    for params in (
        {"limit": 0},
        {"limit": 201},
        {"limit": -1},
        {"limit": "abc"},
        {"before": "abc"},
        {"before": -5},
        {"before": 10**30},
    ):
        error_of(await scene.cara.client.get(url, params=params), 422, "invalid")


async def test_delete_for_me_hides_a_message_from_me_only(scene: Scene) -> None:
    sent = await send_many(scene, 3)
    response = await delete_message(scene.cara, sent[1]["id"], "me")
    assert response.status_code == 204
    cara = await scene.cara.history(scene.conversation)
    assert [m["seq"] for m in cara] == [1, 2, 3]
    hidden = cara[1]
    assert (hidden["hidden"], hidden["deleted"]) == (True, False)
    assert (hidden["body"], hidden["html"], hidden["attachments"]) == ("", "", [])
    assert [m["hidden"] for m in await scene.alice.history(scene.conversation)] == [False] * 3
    inbox = await scene.cara.inbox()
    assert inbox["conversations"][0]["last_message"]["seq"] == 3

    await delete_message(scene.cara, sent[2]["id"], "me")
    inbox = await scene.cara.inbox()
    assert inbox["conversations"][0]["last_message"]["seq"] == 1


async def test_delete_for_everyone_leaves_a_placeholder(scene: Scene, host: Host) -> None:
    [sent] = await send_many(scene, 1)
    reply = (await scene.cara.send(scene.conversation, "Reply")).json()
    error_of(await delete_message(scene.bob, sent["id"], "everyone"), 403, "forbidden")
    error_of(await delete_message(scene.cara, sent["id"], "everyone"), 403, "forbidden")
    error_of(await delete_message(scene.alice, reply["id"], "everyone"), 403, "forbidden")

    assert (await delete_message(scene.alice, sent["id"], "everyone")).status_code == 204
    assert (await delete_message(scene.alice, sent["id"], "everyone")).status_code == 204
    for person in (scene.alice, scene.bob, scene.cara):
        placeholder = (await person.history(scene.conversation))[0]
        assert placeholder["seq"] == 1
        assert placeholder["deleted"] is True
        assert (placeholder["body"], placeholder["html"], placeholder["attachments"]) == (
            "",
            "",
            [],
        )
    assert (await audit_actions(host, "app-1")).count("message.deleted") == 1
    assert (await delete_message(scene.cara, reply["id"], "everyone")).status_code == 204


async def test_two_deletes_for_everyone_at_once_are_one_deletion(scene: Scene, host: Host) -> None:
    """A double click, or two tabs: both answered 204, one deletion audited."""
    [sent] = await send_many(scene, 1)
    answers = await asyncio.gather(
        *(delete_message(scene.alice, sent["id"], "everyone") for _ in range(3))
    )
    assert [a.status_code for a in answers] == [204] * 3
    assert (await scene.cara.history(scene.conversation))[0]["deleted"] is True
    assert (await audit_actions(host, "app-1")).count("message.deleted") == 1


async def test_delete_refuses_bad_scopes_and_unknown_messages(scene: Scene) -> None:
    [sent] = await send_many(scene, 1)
    error_of(await delete_message(scene.alice, sent["id"], "them"), 422, "invalid")
    missing = await delete_message(scene.alice, "no-such-message", "me")
    error_of(missing, 404, "not_found")
    foreign = await delete_message(scene.mallory, sent["id"], "me")
    assert foreign.status_code == 404
    assert foreign.json() == (await delete_message(scene.mallory, "no-such-message", "me")).json()


async def test_read_positions_only_move_forward(scene: Scene) -> None:
    await send_many(scene, 3)
    read = f"/api/conversations/{scene.conversation}/read"
    assert await unread_of(scene.cara, scene.conversation) == 3
    assert await unread_of(scene.alice, scene.conversation) == 0

    assert (await scene.cara.post(read, {"seq": 2})).status_code == 204
    assert await unread_of(scene.cara, scene.conversation) == 1
    assert (await scene.cara.post(read, {"seq": 1})).status_code == 204
    assert await unread_of(scene.cara, scene.conversation) == 1
    view = (await scene.alice.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert {"kind": "candidate", "id": "cara", "seq": 2} in view["reads"]

    assert (await scene.cara.post(read, {"seq": 99})).status_code == 204
    assert await unread_of(scene.cara, scene.conversation) == 0
    view = (await scene.alice.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert {"kind": "candidate", "id": "cara", "seq": 3} in view["reads"]

    await scene.cara.send(scene.conversation, "Thanks")
    assert await unread_of(scene.alice, scene.conversation) == 1
    assert await unread_of(scene.bob, scene.conversation) == 1
    await scene.alice.post(read, {"seq": 4})
    assert await unread_of(scene.alice, scene.conversation) == 0
    assert await unread_of(scene.bob, scene.conversation) == 1

    for body in ({"seq": -1}, {"seq": "3"}, {"seq": True}, {}, {"seq": 1.5}):
        error_of(await scene.cara.post(read, body), 422, "invalid")
    error_of(await scene.cara.post("/api/conversations/nope/read", {"seq": 1}), 404, "not_found")


async def test_sending_too_fast_is_rate_limited(scene: Scene, settings: Any) -> None:
    async with other_app(settings.with_(send_rate=0.5, send_burst=2)) as make:
        browser = make()
        browser.cookies = scene.alice.client.cookies
        alice = Person(browser, scene.alice.me)
        for _ in range(2):
            assert (await alice.send(scene.conversation, "Hi")).status_code == 201
        limited = await alice.send(scene.conversation, "Hi")
        error = error_of(limited, 429, "rate_limited")
        assert 0 < error["retry_after_ms"] <= 2000
        assert limited.headers["retry-after"] == "2"
        # The limit is per person: Cara is not slowed down by Alice.
        cara_browser = make()
        cara_browser.cookies = scene.cara.client.cookies
        assert (
            await Person(cara_browser, scene.cara.me).send(scene.conversation)
        ).status_code == 201
    assert [m["seq"] for m in await scene.bob.history(scene.conversation)] == [1, 2, 3]
