"""SPEC section 5a: the session API, endpoint by endpoint, and the rules of
SPEC section 1 as they reach a browser over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Scene
from tests.helpers import Host, audit_actions, error_of

ENDPOINTS = [
    ("GET", "/api/me"),
    ("PUT", "/api/me/settings"),
    ("GET", "/api/conversations"),
    ("GET", "/api/conversations/{c}"),
    ("GET", "/api/conversations/{c}/messages"),
    ("POST", "/api/conversations/{c}/messages"),
    ("POST", "/api/conversations/{c}/read"),
    ("POST", "/api/conversations/{c}/unread"),
    ("POST", "/api/conversations/{c}/end"),
    ("POST", "/api/conversations/{c}/archive"),
    ("POST", "/api/conversations/{c}/unarchive"),
    ("DELETE", "/api/messages/m1"),
    ("POST", "/api/attachments"),
    ("GET", "/api/attachments/a1"),
    ("GET", "/api/notifications"),
    ("POST", "/api/notifications/read"),
]


async def test_every_endpoint_needs_a_session(scene: Scene, new_client: Any) -> None:
    nobody = new_client()
    for method, path in ENDPOINTS:
        response = await nobody.request(
            method, path.format(c=scene.conversation), headers={"X-CSRF-Token": "x"}
        )
        error_of(response, 401, "unauthorized")


async def test_no_cache_may_keep_an_answer(scene: Scene, host: Host) -> None:
    """A shared proxy or the browser's back button must not keep a
    person's messages or CSRF token, nor a host's data, nor an error."""
    answers = [
        await scene.alice.client.get("/api/me"),
        await scene.alice.client.get("/api/conversations"),
        await scene.cara.client.get(f"/api/conversations/{scene.conversation}/messages"),
        await scene.mallory.client.get(f"/api/conversations/{scene.conversation}"),
        await host.client.get("/api/v1/applications/app-1/audit", headers=host.auth),
    ]
    assert [r.status_code for r in answers] == [200, 200, 200, 404, 200]
    assert {r.headers["cache-control"] for r in answers} == {"private, no-store"}


async def test_me_describes_the_signed_in_person(scene: Scene) -> None:
    alice = (await scene.alice.client.get("/api/me")).json()
    assert alice == {
        "kind": "staff",
        "id": "alice",
        "name": "Alice Recruiter",
        "org": {"id": "acme", "name": "Acme"},
        "timezone": "UTC",
        "timezone_chosen": False,
        "email_notifications": "each",
        "csrf_token": scene.alice.me["csrf_token"],
    }
    cara = (await scene.cara.client.get("/api/me")).json()
    assert cara["kind"] == "candidate"
    assert cara["name"] == "Cara"
    assert "org" not in cara
    assert len(cara["csrf_token"]) >= 16
    assert cara["csrf_token"] != alice["csrf_token"]


async def test_settings_change_timezone_and_email_notifications(scene: Scene) -> None:
    response = await scene.alice.client.put(
        "/api/me/settings",
        json={"timezone": "Europe/London", "email_notifications": "daily"},
        headers=scene.alice.csrf,
    )
    assert response.status_code == 200, response.text
    assert response.json()["timezone"] == "Europe/London"
    assert response.json()["email_notifications"] == "daily"
    partial = await scene.alice.client.put(
        "/api/me/settings", json={"email_notifications": "off"}, headers=scene.alice.csrf
    )
    assert partial.json()["timezone"] == "Europe/London"
    assert partial.json()["email_notifications"] == "off"

    candidate = await scene.cara.client.put(
        "/api/me/settings", json={"timezone": "Asia/Tokyo"}, headers=scene.cara.csrf
    )
    assert candidate.json()["timezone"] == "Asia/Tokyo"
    bob = (await scene.bob.client.get("/api/me")).json()
    assert (bob["timezone"], bob["email_notifications"]) == ("UTC", "each")


async def test_settings_refuse_bad_values(scene: Scene) -> None:
    for body in (
        {"timezone": "Mars/Base"},
        # Names Python's zoneinfo finds but browsers refuse (the pages threw).
        {"timezone": "localtime"},
        {"timezone": "Factory"},
        {"timezone": 1},
        {"email_notifications": "weekly"},
        {"email_notifications": None},
        {"colour": "blue"},
    ):
        response = await scene.alice.client.put(
            "/api/me/settings", json=body, headers=scene.alice.csrf
        )
        error_of(response, 422, "invalid")
    response = await scene.alice.client.put(
        "/api/me/settings", content=b"timezone=UTC", headers=scene.alice.csrf
    )
    error_of(response, 400, "invalid")
    me = (await scene.alice.client.get("/api/me")).json()
    assert (me["timezone"], me["email_notifications"]) == ("UTC", "each")


async def test_one_conversation_with_what_the_viewer_may_do(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Hello")
    staff_view = (await scene.bob.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert staff_view["id"] == scene.conversation
    assert staff_view["application_id"] == "app-1"
    assert staff_view["candidate"] == {"id": "cara", "name": "Cara"}
    assert staff_view["status"] == "interviewing"
    assert staff_view["state"] == "open"
    assert staff_view["can_send"] is True
    assert staff_view["unread"] == 0  # a colleague's message is not news
    assert staff_view["last_seq"] == 1
    assert staff_view["last_message"]["body"] == "Hello"

    cara_view = (await scene.cara.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert cara_view["can_send"] is True
    assert cara_view["unread"] == 1
    error_of(await scene.cara.client.get("/api/conversations/nope"), 404, "not_found")


async def test_a_candidate_writes_first_only_once_interviewing(scene: Scene, host: Host) -> None:
    await host.application("app-1", candidate="cara", status="shortlisted")
    error_of(await scene.cara.send(scene.conversation, "Hi?"), 403, "not_allowed")
    view = (await scene.cara.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert view["can_send"] is False

    assert (await scene.alice.send(scene.conversation, "Hi Cara")).status_code == 201
    assert (await scene.cara.send(scene.conversation, "Hello!")).status_code == 201


async def test_an_interviewing_candidate_may_write_first(scene: Scene) -> None:
    assert (await scene.cara.send(scene.conversation, "Looking forward to it")).status_code == 201


async def test_closed_applications_make_the_candidate_read_only(scene: Scene, host: Host) -> None:
    await scene.alice.send(scene.conversation, "Hi Cara")
    await host.application("app-1", candidate="cara", status="not_progressing")
    error_of(await scene.cara.send(scene.conversation, "Why?"), 403, "not_allowed")
    assert (await scene.alice.send(scene.conversation, "Sorry")).status_code == 201

    await host.application("app-1", candidate="cara", status="withdrawn")
    error_of(await scene.cara.send(scene.conversation, "Bye"), 403, "not_allowed")
    error_of(await scene.alice.send(scene.conversation, "Wait"), 403, "not_allowed")
    history = await scene.cara.history(scene.conversation)
    # The two messages, each status change as a system line after them.
    assert [m["sender"]["kind"] for m in history] == ["staff", "system", "staff", "system"]
    assert [m["event"]["to"] for m in history if m["sender"]["kind"] == "system"] == [
        "not_progressing",
        "withdrawn",
    ]


async def test_ending_and_reopening_a_conversation(scene: Scene, host: Host) -> None:
    await scene.alice.send(scene.conversation, "Hi Cara")
    error_of(
        await scene.cara.post(f"/api/conversations/{scene.conversation}/end"), 403, "forbidden"
    )

    ended = await scene.alice.post(f"/api/conversations/{scene.conversation}/end")
    assert ended.status_code == 200
    assert ended.json() == {"state": "ended"}
    again = await scene.bob.post(f"/api/conversations/{scene.conversation}/end")
    assert again.json() == {"state": "ended"}
    error_of(await scene.cara.send(scene.conversation, "Hello?"), 409, "conversation_ended")
    view = (await scene.cara.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert (view["state"], view["can_send"]) == ("ended", False)

    assert (await scene.bob.send(scene.conversation, "One more thing")).status_code == 201
    view = (await scene.cara.client.get(f"/api/conversations/{scene.conversation}")).json()
    assert (view["state"], view["can_send"]) == ("open", True)
    assert (await scene.cara.send(scene.conversation, "Yes?")).status_code == 201
    actions = await audit_actions(host, "app-1")
    assert actions.count("conversation.ended") == 1
    assert actions.count("conversation.reopened") == 1


async def test_archive_is_per_staff_user_and_staff_only(scene: Scene) -> None:
    conversation = f"/api/conversations/{scene.conversation}"
    error_of(await scene.cara.post(f"{conversation}/archive"), 403, "forbidden")
    error_of(await scene.cara.post(f"{conversation}/unarchive"), 403, "forbidden")

    assert (await scene.alice.post(f"{conversation}/archive")).status_code == 204
    assert (await scene.alice.post(f"{conversation}/archive")).status_code == 204
    assert (await scene.alice.inbox())["conversations"] == []
    archived = await scene.alice.inbox(filter="archived")
    assert [c["id"] for c in archived["conversations"]] == [scene.conversation]
    assert [c["id"] for c in (await scene.bob.inbox())["conversations"]] == [scene.conversation]

    # The conversation itself says whose archive it is in, however it is opened.
    assert (await scene.alice.client.get(conversation)).json()["archived"] is True
    assert (await scene.bob.client.get(conversation)).json()["archived"] is False
    assert (await scene.cara.client.get(conversation)).json()["archived"] is False

    assert (await scene.alice.post(f"{conversation}/unarchive")).status_code == 204
    assert [c["id"] for c in (await scene.alice.inbox())["conversations"]] == [scene.conversation]
    assert (await scene.alice.inbox(filter="archived"))["conversations"] == []
    assert (await scene.alice.client.get(conversation)).json()["archived"] is False


async def test_notifications_ring_for_the_other_side(scene: Scene) -> None:
    await scene.alice.send(scene.conversation, "Hi Cara")
    bell = (await scene.cara.client.get("/api/notifications")).json()
    assert bell["unread"] == 1
    [note] = bell["notifications"]
    assert note["conversation"] == scene.conversation
    assert note["read"] is False
    assert "Alice Recruiter" in note["text"]
    assert (await scene.alice.client.get("/api/notifications")).json()["unread"] == 0

    await scene.cara.post(f"/api/conversations/{scene.conversation}/read", {"seq": 1})
    assert (await scene.cara.client.get("/api/notifications")).json()["unread"] == 0

    await scene.cara.send(scene.conversation, "Hello both")
    for staff in (scene.alice, scene.bob):
        assert (await staff.client.get("/api/notifications")).json()["unread"] == 1
    assert (await scene.mallory.client.get("/api/notifications")).json()["unread"] == 0
    assert (await scene.bob.post("/api/notifications/read")).status_code == 204
    bell = (await scene.bob.client.get("/api/notifications")).json()
    assert bell["unread"] == 0
    assert [n["read"] for n in bell["notifications"]] == [True]
    assert (await scene.alice.client.get("/api/notifications")).json()["unread"] == 1


async def test_unknown_api_routes_answer_with_the_error_object(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong_method = await client.delete("/api/conversations")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "invalid"


async def test_a_conversation_says_why_sending_is_disabled(scene: Scene) -> None:
    path = f"/api/conversations/{scene.conversation}"
    assert (await scene.cara.client.get(path)).json()["send_disabled_reason"] is None
    await scene.alice.post(f"{path}/end")
    summary = (await scene.cara.client.get(path)).json()
    assert summary["can_send"] is False
    assert summary["send_disabled_reason"] == "This conversation has ended."
