"""SPEC section 4: the host integration API under /api/v1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from chatserver.store.tables import applications, audit_events, conversations, staff
from tests.conftest import Scene
from tests.helpers import AUTH, Host, audit_actions, count_rows, error_of

STAFF_BODY: dict[str, Any] = {
    "org": {"id": "acme", "name": "Acme Academy"},
    "name": "Alice Recruiter",
    "email": "alice@acme.example",
    "timezone": "Europe/London",
}
APPLICATION_BODY: dict[str, Any] = {
    "org": {"id": "acme", "name": "Acme Academy"},
    "job": {"id": "job-7", "title": "Teacher of Physics"},
    "candidate": {"id": "cand-1", "name": "Cara Candidate", "email": "cara@mail.example"},
    "status": "submitted",
    "applied_at": "2026-11-02T09:30:00Z",
}


def with_(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**body, **changes}


def without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != name}


async def put(client: httpx.AsyncClient, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return await client.put(path, json=body, headers=AUTH, **kwargs)


async def test_every_endpoint_needs_a_known_bearer_key(client: httpx.AsyncClient) -> None:
    await put(client, "/api/v1/staff/alice", STAFF_BODY)
    await put(client, "/api/v1/applications/app-1", APPLICATION_BODY)
    calls = [
        ("PUT", "/api/v1/staff/alice", STAFF_BODY),
        ("PUT", "/api/v1/applications/app-1", APPLICATION_BODY),
        ("POST", "/api/v1/staff/alice/login-link", None),
        ("POST", "/api/v1/applications/app-1/candidate-link", None),
        ("GET", "/api/v1/applications/app-1/audit", None),
    ]
    wrong_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer not-the-key"},
        {"Authorization": "Basic dGVzdC1hcGkta2V5"},
        {"Authorization": "Bearer "},
    ]
    for method, path, body in calls:
        for headers in wrong_headers:
            response = await client.request(method, path, json=body, headers=headers)
            error_of(response, 401, "unauthorized")


async def test_put_staff_is_an_idempotent_upsert(client: httpx.AsyncClient, app: Any) -> None:
    first = await put(client, "/api/v1/staff/alice", STAFF_BODY)
    again = await put(client, "/api/v1/staff/alice", STAFF_BODY)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["id"] == "alice"
    assert await count_rows(app, staff) == 1

    renamed = await put(client, "/api/v1/staff/alice", with_(STAFF_BODY, name="Alice Smith"))
    assert renamed.json()["name"] == "Alice Smith"
    assert await count_rows(app, staff) == 1


async def test_put_staff_timezone_defaults_to_utc(client: httpx.AsyncClient) -> None:
    response = await put(client, "/api/v1/staff/alice", without(STAFF_BODY, "timezone"))
    assert response.status_code == 200, response.text
    assert response.json()["timezone"] == "UTC"


async def test_put_application_is_an_idempotent_upsert(client: httpx.AsyncClient, app: Any) -> None:
    first = await put(client, "/api/v1/applications/app-1", APPLICATION_BODY)
    again = await put(client, "/api/v1/applications/app-1", APPLICATION_BODY)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert set(first.json()) >= {"id", "conversation_id", "status"}
    assert first.json()["id"] == "app-1"
    assert first.json()["status"] == "submitted"
    assert await count_rows(app, applications) == 1
    assert await count_rows(app, conversations) == 1
    assert await count_rows(app, audit_events) == 1


async def test_a_status_change_is_stored_and_audited(client: httpx.AsyncClient) -> None:
    created = await put(client, "/api/v1/applications/app-1", APPLICATION_BODY)
    changed = await put(
        client, "/api/v1/applications/app-1", with_(APPLICATION_BODY, status="interviewing")
    )
    assert changed.json()["status"] == "interviewing"
    assert changed.json()["conversation_id"] == created.json()["conversation_id"]
    await put(client, "/api/v1/applications/app-1", with_(APPLICATION_BODY, status="interviewing"))

    audit = await client.get("/api/v1/applications/app-1/audit", headers=AUTH)
    events = audit.json()["events"]
    assert [e["action"] for e in events] == ["application.created", "application.status_changed"]
    assert events[1]["detail"] == {"from": "submitted", "to": "interviewing"}
    assert events[1]["actor"] is None


async def test_two_first_puts_of_an_application_at_once_record_both(host: Host) -> None:
    """The host creating an application and changing its status at once (or
    retrying a create): one creation, and the status change recorded."""
    await asyncio.gather(
        host.application("app-7", status="submitted"),
        host.application("app-7", status="interviewing"),
    )
    actions = await audit_actions(host, "app-7")
    assert actions.count("application.created") == 1, actions
    assert actions.count("application.status_changed") == 1, actions


async def test_a_new_staff_user_put_into_two_organisations_at_once_joins_one(
    host: Host, app: Any
) -> None:
    """Conflicting calls at the same moment: one is answered with the staff
    user in its organisation, the other refused, and the stored user is
    where the answer said (never moved by the second)."""

    async def put_into(org: str) -> httpx.Response:
        body = {"org": {"id": org, "name": org.title()}, "name": "Sam", "email": "sam@x.example"}
        return await host.client.put("/api/v1/staff/sam", json=body, headers=AUTH)

    answers = await asyncio.gather(put_into("acme"), put_into("globex"))
    assert sorted(a.status_code for a in answers) == [200, 422], [a.text for a in answers]
    (joined,) = [a.json() for a in answers if a.status_code == 200]
    assert await count_rows(app, staff, id="sam", org_id=joined["org"]["id"]) == 1


async def test_one_new_job_put_with_two_organisations_at_once_stays_in_one(
    host: Host, app: Any
) -> None:
    """Two organisations' applications naming one new job id at the same
    moment: the job stays with the first, the other call is refused, and no
    application points at another organisation's job."""
    answers = await asyncio.gather(
        *(
            host.client.put(
                f"/api/v1/applications/app-{org}",
                json=with_(APPLICATION_BODY, org={"id": org, "name": org.title()}),
                headers=AUTH,
            )
            for org in ("acme", "globex")
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 422], [a.text for a in answers]
    (stored,) = [a.json() for a in answers if a.status_code == 200]
    assert await count_rows(app, applications) == 1
    assert await count_rows(app, applications, id=stored["id"]) == 1


async def test_a_body_that_is_not_json_is_400_invalid(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/staff/alice", "/api/v1/applications/app-1"):
        response = await client.put(path, content=b"{not json", headers=AUTH)
        error_of(response, 400, "invalid")
        response = await client.put(path, json=["a", "list"], headers=AUTH)
        error_of(response, 422, "invalid")


async def test_wrong_types_and_missing_fields_are_422_invalid(client: httpx.AsyncClient) -> None:
    bad_staff = [
        without(STAFF_BODY, "org"),
        without(STAFF_BODY, "name"),
        without(STAFF_BODY, "email"),
        with_(STAFF_BODY, org="acme"),
        with_(STAFF_BODY, org={"id": "acme"}),
        with_(STAFF_BODY, org={"id": 7, "name": "Acme"}),
        with_(STAFF_BODY, name=42),
        with_(STAFF_BODY, name="   "),
        with_(STAFF_BODY, name="x" * 201),
        with_(STAFF_BODY, timezone="Mars/Olympus_Mons"),
        with_(STAFF_BODY, timezone=0),
        with_(STAFF_BODY, timezone=None),
        with_(STAFF_BODY, name="Alice\x00"),
        with_(STAFF_BODY, org={"id": "acme\n", "name": "Acme"}),
    ]
    for body in bad_staff:
        error_of(await put(client, "/api/v1/staff/alice", body), 422, "invalid")

    bad_applications = [
        without(APPLICATION_BODY, "job"),
        without(APPLICATION_BODY, "candidate"),
        without(APPLICATION_BODY, "status"),
        without(APPLICATION_BODY, "applied_at"),
        with_(APPLICATION_BODY, status="rejected"),
        with_(APPLICATION_BODY, status=3),
        with_(APPLICATION_BODY, applied_at="yesterday"),
        with_(APPLICATION_BODY, applied_at=1700000000),
        with_(APPLICATION_BODY, job={"id": "job 7", "title": "Physics"}),
        with_(APPLICATION_BODY, candidate={"id": "c" * 129, "name": "C", "email": "c@x"}),
        with_(APPLICATION_BODY, candidate={"id": "cand-1", "name": "Cara"}),
    ]
    for body in bad_applications:
        error_of(await put(client, "/api/v1/applications/app-1", body), 422, "invalid")
    audit = await client.get("/api/v1/applications/app-1/audit", headers=AUTH)
    error_of(audit, 404, "not_found")


async def test_bad_ids_in_the_path_are_422_invalid(client: httpx.AsyncClient) -> None:
    for bad in ("has space", "x" * 129, "semi;colon", "quote'", "newline%0A", "nul%00"):
        error_of(await put(client, f"/api/v1/staff/{bad}", STAFF_BODY), 422, "invalid")
        response = await put(client, f"/api/v1/applications/{bad}", APPLICATION_BODY)
        error_of(response, 422, "invalid")
        for path in (
            f"/api/v1/staff/{bad}/login-link",
            f"/api/v1/applications/{bad}/candidate-link",
        ):
            error_of(await client.post(path, headers=AUTH), 422, "invalid")
        audit = await client.get(f"/api/v1/applications/{bad}/audit", headers=AUTH)
        error_of(audit, 422, "invalid")


async def test_an_oversize_body_is_413_too_large(client: httpx.AsyncClient) -> None:
    huge = with_(STAFF_BODY, name="x" * 300_000)
    error_of(await put(client, "/api/v1/staff/alice", huge), 413, "too_large")


async def test_ids_of_another_organisation_are_refused(client: httpx.AsyncClient) -> None:
    await put(client, "/api/v1/applications/app-1", APPLICATION_BODY)
    globex = {"id": "globex", "name": "Globex"}

    stolen_application = with_(APPLICATION_BODY, org=globex, job={"id": "g-1", "title": "Spy"})
    response = await put(client, "/api/v1/applications/app-1", stolen_application)
    error_of(response, 422, "invalid")
    stolen_job = with_(APPLICATION_BODY, org=globex)
    error_of(await put(client, "/api/v1/applications/app-2", stolen_job), 422, "invalid")

    audit = await client.get("/api/v1/applications/app-1/audit", headers=AUTH)
    assert [e["action"] for e in audit.json()["events"]] == ["application.created"]
    error_of(await client.get("/api/v1/applications/app-2/audit", headers=AUTH), 404, "not_found")

    await put(client, "/api/v1/staff/alice", STAFF_BODY)
    moved = await put(client, "/api/v1/staff/alice", with_(STAFF_BODY, org=globex))
    error_of(moved, 422, "invalid")
    same_org = await put(client, "/api/v1/staff/alice", STAFF_BODY)
    assert same_org.json()["org"] == STAFF_BODY["org"]


async def test_links_are_absolute_urls_for_known_people_only(host: Host) -> None:
    await host.staff("alice")
    await host.application("app-1")
    staff_url = await host.staff_link("alice")
    candidate_url = await host.candidate_link("app-1")
    assert staff_url.startswith("http://testserver/auth/staff?token=")
    assert candidate_url.startswith("http://testserver/auth/candidate?token=")

    unknown_staff = await host.client.post("/api/v1/staff/nobody/login-link", headers=AUTH)
    error_of(unknown_staff, 404, "not_found")
    unknown_app = await host.client.post("/api/v1/applications/nope/candidate-link", headers=AUTH)
    error_of(unknown_app, 404, "not_found")
    unknown_audit = await host.client.get("/api/v1/applications/nope/audit", headers=AUTH)
    error_of(unknown_audit, 404, "not_found")


async def test_the_audit_trail_lists_every_state_change_oldest_first(
    scene: Scene, host: Host
) -> None:
    await host.application("app-1", candidate="cara", status="offered")
    sent = (await scene.alice.send(scene.conversation, "Please call me")).json()
    await scene.alice.client.delete(
        f"/api/messages/{sent['id']}", params={"for": "everyone"}, headers=scene.alice.csrf
    )
    await scene.bob.post(f"/api/conversations/{scene.conversation}/end")
    await scene.bob.send(scene.conversation, "Reopening this")

    response = await host.client.get("/api/v1/applications/app-1/audit", headers=AUTH)
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [e["action"] for e in events] == [
        "application.created",
        "link.issued",
        "application.status_changed",
        "message.sent",
        "message.deleted",
        "conversation.ended",
        "conversation.reopened",
        "message.sent",
    ]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert all(e["at"].endswith("Z") for e in events)
    by_action = {e["action"]: e for e in events}
    alice = {"kind": "staff", "id": "alice", "name": "Alice Recruiter"}
    bob = {"kind": "staff", "id": "bob", "name": "Bob Manager"}
    assert by_action["application.created"]["actor"] is None
    assert by_action["link.issued"]["actor"] is None
    assert by_action["application.status_changed"]["detail"] == {
        "from": "interviewing",
        "to": "offered",
    }
    assert by_action["message.deleted"]["actor"] == alice
    assert by_action["message.deleted"]["detail"]["message_id"] == sent["id"]
    assert by_action["conversation.ended"]["actor"] == bob
    assert by_action["conversation.reopened"]["actor"] == bob
    sends = [e for e in events if e["action"] == "message.sent"]
    # Seqs count the system lines too (status changed 1, ended 3, reopened 4),
    # which are no `message.sent`: the change each tells is audited instead.
    assert [(e["actor"], e["detail"]["seq"]) for e in sends] == [(alice, 2), (bob, 5)]
    assert sends[0]["detail"]["message_id"] == sent["id"]
    assert await audit_actions(host, "app-9") == ["application.created"]


async def test_an_oversize_body_without_a_length_is_413_too(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'"}'

    response = await client.put("/api/v1/staff/alice", content=chunks(), headers=AUTH)
    assert "content-length" not in response.request.headers
    error_of(response, 413, "too_large")


async def test_inbound_email_without_a_reply_domain_says_the_feature_is_off(
    client: httpx.AsyncClient, settings: Any
) -> None:
    """An integrator who left CHAT_REPLY_DOMAIN out learns that, not that
    every mail is "not addressed to a reply address"."""
    assert not settings.reply_domain
    await put(client, "/api/v1/applications/app-1", APPLICATION_BODY)
    mail = (
        b"From: Cara Candidate <cara@mail.example>\r\n"
        b"To: reply+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@reply.example.com\r\n"
        b"Subject: Re: your application\r\n"
        b"Message-ID: <off-1@mail.example>\r\n\r\n"
        b"Yes, Tuesday works.\r\n"
    )
    response = await client.post(
        "/api/v1/inbound-email",
        content=mail,
        headers={**AUTH, "Content-Type": "message/rfc822"},
    )
    error = error_of(response, 404, "not_found")
    assert error["message"] == "Reply by email is not configured (CHAT_REPLY_DOMAIN is not set)."
