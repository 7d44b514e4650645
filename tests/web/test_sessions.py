"""Issue 9 item 8: sessions that can be ended, and staff who leave.

Sign-out needs the CSRF token and ends the session on the server (a copied
cookie stops working too). `DELETE /api/v1/staff/{id}` (SPEC section 4)
ends the person's sessions and links, closes their sockets, keeps their
messages under their name, records `staff.removed` in every application of
the organisation they wrote in, and stops their emails; a later PUT brings
them back with fresh sessions only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from chatserver.clock import utcnow
from chatserver.store import emails
from chatserver.web.auth import SESSION_COOKIE
from tests.conftest import Scene
from tests.helpers import AUTH, Host, audit_actions, error_of, open_link, sign_in_staff
from tests.ws_helpers import LiveServer, open_socket


def copy_of(person_client: httpx.AsyncClient, make: Any) -> httpx.AsyncClient:
    """Another browser holding a copy of the same session cookie."""
    thief: httpx.AsyncClient = make()
    thief.cookies.set(SESSION_COOKIE, person_client.cookies[SESSION_COOKIE])
    return thief


async def test_sign_out_needs_the_csrf_token(scene: Scene) -> None:
    for headers in ({}, {"X-CSRF-Token": "wrong"}, scene.bob.csrf):
        response = await scene.alice.client.post("/auth/sign-out", headers=headers)
        error_of(response, 403, "forbidden")
    assert (await scene.alice.client.get("/api/me")).status_code == 200
    # A foreign form can post, but cannot know the token either.
    forged = await scene.alice.client.post("/auth/sign-out", data={"csrf_token": "guess"})
    error_of(forged, 403, "forbidden")
    assert (await scene.alice.client.get("/api/me")).status_code == 200
    # A cross-site form comes without the cookie (SameSite=Lax): its answer
    # sets no cookie, so the browser keeps the session it has.
    scene.alice.client.cookies, jar = httpx.Cookies(), scene.alice.client.cookies
    cross_site = await scene.alice.client.post("/auth/sign-out", data={"csrf_token": "guess"})
    scene.alice.client.cookies = jar
    assert cross_site.status_code == 303
    assert "set-cookie" not in cross_site.headers
    assert (await scene.alice.client.get("/api/me")).status_code == 200


async def test_sign_out_ends_the_session_everywhere_it_was_copied(
    scene: Scene, new_client: Any, host: Host
) -> None:
    thief = copy_of(scene.alice.client, new_client)
    assert (await thief.get("/api/me")).status_code == 200
    # The page's form sends the token as a field.
    out = await scene.alice.client.post(
        "/auth/sign-out", data={"csrf_token": scene.alice.me["csrf_token"]}
    )
    assert out.status_code == 303
    error_of(await scene.alice.client.get("/api/me"), 401, "unauthorized")
    error_of(await thief.get("/api/me"), 401, "unauthorized")
    error_of(await thief.post(f"/api/conversations/{scene.conversation}/end"), 401, "unauthorized")
    # Signing in again gives a new, working session; the old one stays dead.
    again = await sign_in_staff(host, new_client(), "alice")
    assert again.me["id"] == "alice"
    error_of(await thief.get("/api/me"), 401, "unauthorized")
    # Others are not signed out.
    assert (await scene.bob.client.get("/api/me")).status_code == 200


async def test_a_candidate_can_sign_out_too(scene: Scene, new_client: Any) -> None:
    thief = copy_of(scene.cara.client, new_client)
    out = await scene.cara.client.post("/auth/sign-out", headers=scene.cara.csrf)
    assert out.status_code == 303
    error_of(await thief.get(f"/api/conversations/{scene.conversation}"), 401, "unauthorized")


async def test_signing_out_closes_the_persons_sockets(server: LiveServer, scene: Scene) -> None:
    async with open_socket(server, scene.alice) as ws, open_socket(server, scene.bob) as bob:
        await ws.subscribe(scene.conversation)
        await bob.subscribe(scene.conversation)
        await scene.alice.client.post("/auth/sign-out", headers=scene.alice.csrf)
        assert await ws.closed_code() == 1008
        await bob.send({"type": "ping"})
        await bob.expect("pong")


async def test_removing_a_staff_user(
    scene: Scene, host: Host, new_client: Any, server: LiveServer
) -> None:
    # Alice writes in app-1; app-2 is acme's too but she never wrote there.
    await host.application("app-2", candidate="erin", status="interviewing", job="acme-job-2")
    first = await scene.alice.send(scene.conversation, "Hello Cara")
    assert first.status_code == 201, first.text
    await scene.alice.send(scene.conversation, "Are you free on Friday?")
    await scene.cara.send(scene.conversation, "Yes")
    unused_link = await host.staff_link("alice")
    thief = copy_of(scene.alice.client, new_client)

    async with open_socket(server, scene.alice) as ws:
        await ws.subscribe(scene.conversation)
        removed = await host.client.delete("/api/v1/staff/alice", headers=AUTH)
        assert removed.status_code == 204
        assert removed.content == b""
        assert await ws.closed_code() == 1008

    for browser in (scene.alice.client, thief):
        error_of(await browser.get("/api/me"), 401, "unauthorized")
        error_of(await scene.alice.send(scene.conversation, "still here?"), 401, "unauthorized")
    refused = await open_link(new_client(), unused_link)
    assert refused.status_code == 401
    assert SESSION_COOKIE not in refused.cookies
    error_of(
        await host.client.post("/api/v1/staff/alice/login-link", headers=AUTH), 404, "not_found"
    )

    # Her messages stay, under her name.
    history = await scene.bob.history(scene.conversation)
    assert [(m["sender"]["id"], m["sender"]["name"]) for m in history[:2]] == [
        ("alice", "Alice Recruiter"),
        ("alice", "Alice Recruiter"),
    ]
    assert history[0]["body"] == "Hello Cara"

    # Audited where she wrote, once, not elsewhere.
    trail = (await host.client.get("/api/v1/applications/app-1/audit", headers=AUTH)).json()
    [event] = [e for e in trail["events"] if e["action"] == "staff.removed"]
    assert event["actor"] is None
    assert event["detail"]["staff"] == {"kind": "staff", "id": "alice", "name": "Alice Recruiter"}
    assert trail["events"][-1] == event
    assert "staff.removed" not in await audit_actions(host, "app-2")
    assert "staff.removed" not in await audit_actions(host, "app-9")

    # Removing again changes nothing; unknown people are not found.
    assert (await host.client.delete("/api/v1/staff/alice", headers=AUTH)).status_code == 204
    assert (await audit_actions(host, "app-1")).count("staff.removed") == 1
    error_of(await host.client.delete("/api/v1/staff/nobody", headers=AUTH), 404, "not_found")
    error_of(await host.client.delete("/api/v1/staff/bad id", headers=AUTH), 422, "invalid")
    error_of(await host.client.delete("/api/v1/staff/alice"), 401, "unauthorized")

    # A later PUT restores access: new links work, old sessions and links do not.
    await host.staff("alice", name="Alice Recruiter")
    back = await sign_in_staff(host, new_client(), "alice")
    assert back.me["id"] == "alice"
    assert (await back.send(scene.conversation, "I'm back")).status_code == 201
    error_of(await thief.get("/api/me"), 401, "unauthorized")
    assert (await open_link(new_client(), unused_link)).status_code == 401


async def test_removed_staff_get_no_more_emails(scene: Scene, host: Host, app: Any) -> None:
    await scene.cara.send(scene.conversation, "A reply nobody has read")
    later, since = utcnow() + timedelta(days=1), utcnow() - timedelta(days=1)
    await host.client.put(
        "/api/v1/staff/bob",
        json={
            "org": {"id": "acme", "name": "Acme"},
            "name": "Bob Manager",
            "email": "bob@acme.example",
            "email_notifications": "daily",
        },
        headers=AUTH,
    )

    async def recipients() -> tuple[set[str], set[str]]:
        async with app.state.services.chat.db.transaction() as conn:
            each = await emails.due_each(conn, "staff", later, since)
            daily = await emails.daily_readers(conn, "2999-01-01")
        return {d.recipient_id for d in each}, {r["id"] for r in daily if r["kind"] == "staff"}

    assert await recipients() == ({"alice"}, {"bob"})
    await host.client.delete("/api/v1/staff/alice", headers=AUTH)
    await host.client.delete("/api/v1/staff/bob", headers=AUTH)
    assert await recipients() == (set(), set())
