"""SPEC section 4 (links) and 5a (sessions, CSRF): signing in from a link,
the session cookie it becomes, and the CSRF header every mutation needs."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import update

from chatserver.chat.signing import Session, Signer
from chatserver.clock import utcnow
from chatserver.roles import Role
from chatserver.settings import Settings
from chatserver.store.tables import applications, used_login_tokens
from chatserver.web.auth import SESSION_COOKIE
from tests.conftest import SECRET, Scene
from tests.helpers import (
    Host,
    count_rows,
    error_of,
    open_link,
    other_app,
    sign_in_staff,
    signed_in,
)

NEW_SECRET = "the-new-secret-key-fedcba9876543210"
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def aged_signer(settings: Settings, age: timedelta) -> Signer:
    """A signer whose clock runs `age` behind: its tokens are already that old."""
    return Signer(settings, clock=lambda: utcnow() - age)


def assert_link_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert SESSION_COOKIE not in response.cookies


async def test_a_staff_link_signs_in_and_lands_on_the_inbox(host: Host, new_client: Any) -> None:
    await host.staff("alice", name="Alice Recruiter")
    browser = new_client()
    response = await open_link(browser, await host.staff_link("alice"))

    assert response.status_code == 303
    assert response.headers["location"] == "/inbox"
    assert response.headers["referrer-policy"] == "no-referrer"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    me = await signed_in(browser)
    assert me.me["kind"] == "staff"
    assert me.me["id"] == "alice"
    assert me.me["org"] == {"id": "acme", "name": "Acme"}


async def test_a_staff_link_works_once(host: Host, new_client: Any) -> None:
    await host.staff("alice")
    url = await host.staff_link("alice")
    assert (await open_link(new_client(), url)).status_code == 303

    again = new_client()
    assert_link_refused(await open_link(again, url))
    error_of(await again.get("/api/me"), 401, "unauthorized")


async def test_a_staff_link_expires_after_five_minutes(
    host: Host, new_client: Any, settings: Settings
) -> None:
    await host.staff("alice")
    fresh_enough, _ = aged_signer(settings, 4 * MINUTE).staff_link_token("alice")
    too_old, _ = aged_signer(settings, 5 * MINUTE + timedelta(seconds=2)).staff_link_token("alice")
    assert (await open_link(new_client(), f"/auth/staff?token={fresh_enough}")).status_code == 303
    assert_link_refused(await open_link(new_client(), f"/auth/staff?token={too_old}"))


async def test_forged_and_misused_tokens_are_refused(host: Host, new_client: Any) -> None:
    await host.staff("alice")
    await host.application("app-1")
    staff_token = token_of(await host.staff_link("alice"))
    candidate_token = token_of(await host.candidate_link("app-1"))
    forger = Signer(Settings(secret_keys=("an-attacker-secret-0123456789",)))
    forged_staff, _ = forger.staff_link_token("alice")
    tampered = staff_token[:-2] + ("AA" if not staff_token.endswith("AA") else "BB")

    for path in (
        "/auth/staff?token=",
        "/auth/staff",
        "/auth/staff?token=garbage",
        f"/auth/staff?token={forged_staff}",
        f"/auth/staff?token={tampered}",
        f"/auth/staff?token={candidate_token}",
        f"/auth/candidate?token={staff_token}",
        f"/auth/candidate?token={forger.candidate_link_token('app-1', 'cand-1')}",
    ):
        assert_link_refused(await open_link(new_client(), path))


async def test_a_candidate_link_opens_the_chat_and_works_many_times(
    host: Host, new_client: Any
) -> None:
    created = await host.application("app-1", candidate="cara", status="interviewing")
    url = await host.candidate_link("app-1")
    for _ in range(3):
        browser = new_client()
        response = await open_link(browser, url)
        assert response.status_code == 303
        location = response.headers["location"]
        assert location == f"/c/{created['conversation_id']}"
        assert "token" not in location
        assert response.headers["referrer-policy"] == "no-referrer"
        me = await signed_in(browser)
        assert me.me["kind"] == "candidate"
        assert me.me["id"] == "cara"
        assert "org" not in me.me


async def test_a_candidate_link_in_a_staff_browser_asks_before_switching(
    scene: Scene, host: Host
) -> None:
    """A recruiter opening a candidate's link stays themselves until they
    choose to continue as the candidate (who could then be written as)."""
    alice = scene.alice.client
    url = await host.candidate_link("app-1")

    async def choose(continue_as: str, **changed: str) -> httpx.Response:
        opened = await open_link(alice, url)
        assert opened.status_code == 303, opened.text
        asking = opened.headers["location"]
        assert asking.startswith("/auth/switch?")
        assert "token" not in asking
        assert (await signed_in(alice)).me["id"] == "alice"
        page = await alice.get(asking)
        assert page.status_code == 200, page.text
        assert "Cara" in page.text
        assert "Alice Recruiter" in page.text
        form = {name: _field(page.text, name) for name in ("csrf_token", "to")}
        return await alice.post(
            "/auth/switch", data={**form, **changed, "continue_as": continue_as}
        )

    stay = await choose("staff")
    assert (stay.status_code, stay.headers["location"]) == (303, "/inbox")
    assert (await signed_in(alice)).me["id"] == "alice"
    # Made once: the waiting session is gone with the choice, and a second
    # go (Back, another tab) says the choice expired.
    again = await alice.post("/auth/switch", data={"continue_as": "candidate"})
    assert again.status_code == 409
    assert "This choice has expired" in again.text
    assert again.headers["cache-control"] == "no-store"
    forged = await choose("candidate", csrf_token="forged")
    assert forged.status_code == 409
    assert (await signed_in(alice)).me["id"] == "alice"
    elsewhere = await choose("candidate", to="https://evil.example/")
    assert elsewhere.headers["location"] == "/"
    assert (await signed_in(alice)).me["id"] == "cara"

    await sign_in_staff(host, alice, "alice")
    switched = await choose("candidate")
    assert switched.headers["location"] == f"/c/{scene.conversation}"
    assert (await signed_in(alice)).me["id"] == "cara"


def _field(html: str, name: str) -> str:
    """The value of a hidden input of a page's form."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in {html}"
    return unescape(found.group(1))


async def test_a_candidate_link_is_valid_thirty_days(
    app: Any, host: Host, new_client: Any, settings: Settings
) -> None:
    # The application was given to Cara 31 days ago (in the database's time).
    await host.application("app-1")
    async with app.state.services.chat.db.transaction() as conn:
        await conn.execute(update(applications).values(candidate_since=utcnow() - 31 * DAY))
    fresh_enough = aged_signer(settings, 29 * DAY).candidate_link_token("app-1", "cara")
    too_old = aged_signer(settings, 30 * DAY + MINUTE).candidate_link_token("app-1", "cara")
    response = await open_link(new_client(), f"/auth/candidate?token={fresh_enough}")
    assert response.status_code == 303
    assert_link_refused(await open_link(new_client(), f"/auth/candidate?token={too_old}"))


async def test_a_candidate_link_is_scoped_to_its_application(host: Host, new_client: Any) -> None:
    first = await host.application("app-1", candidate="cara", status="interviewing")
    second = await host.application("app-2", candidate="cara", job="acme-job-2")
    browser = new_client()
    await open_link(browser, await host.candidate_link("app-1"))
    cara = await signed_in(browser)

    inbox = await cara.inbox()
    assert [c["id"] for c in inbox["conversations"]] == [first["conversation_id"]]
    hidden = await browser.get(f"/api/conversations/{second['conversation_id']}/messages")
    error_of(hidden, 404, "not_found")

    await open_link(browser, await host.candidate_link("app-2"))
    inbox = await cara.inbox()
    assert {c["id"] for c in inbox["conversations"]} == {
        first["conversation_id"],
        second["conversation_id"],
    }


async def test_a_link_for_a_deleted_or_other_application_is_refused(
    host: Host, new_client: Any, settings: Settings
) -> None:
    token = Signer(settings).candidate_link_token("never-existed", "cara")
    assert_link_refused(await open_link(new_client(), f"/auth/candidate?token={token}"))
    staff_token, _ = Signer(settings).staff_link_token("nobody")
    assert_link_refused(await open_link(new_client(), f"/auth/staff?token={staff_token}"))


async def test_rotating_keys_keeps_old_links_while_the_old_key_is_listed(
    host: Host, new_client: Any, settings: Settings
) -> None:
    await host.staff("alice")
    await host.application("app-1")
    old_candidate_url = await host.candidate_link("app-1")
    old_staff_url = await host.staff_link("alice")
    old_session = new_client()
    await open_link(old_session, await host.staff_link("alice"))
    old_cookie = old_session.cookies[SESSION_COOKIE]

    async with other_app(settings.with_(secret_keys=(NEW_SECRET, SECRET))) as make:
        rotating = make()
        assert (await open_link(rotating, old_candidate_url)).status_code == 303
        assert (await open_link(make(), old_staff_url)).status_code == 303
        moved = make()
        moved.cookies.set(SESSION_COOKIE, old_cookie)
        assert (await moved.get("/api/me")).status_code == 200
        new_url = (
            await make().post(
                "/api/v1/applications/app-1/candidate-link",
                headers={"Authorization": "Bearer test-api-key"},
            )
        ).json()["url"]

    async with other_app(settings.with_(secret_keys=(NEW_SECRET,))) as make:
        assert_link_refused(await open_link(make(), old_candidate_url))
        assert (await open_link(make(), new_url)).status_code == 303
        dropped = make()
        dropped.cookies.set(SESSION_COOKIE, old_cookie)
        error_of(await dropped.get("/api/me"), 401, "unauthorized")

    # The new key signs: the old deployment (old key only) refuses its links.
    assert_link_refused(await open_link(new_client(), new_url))


async def test_sessions_need_a_valid_unexpired_cookie(
    scene: Scene, new_client: Any, settings: Settings
) -> None:
    nobody = new_client()
    error_of(await nobody.get("/api/me"), 401, "unauthorized")
    nobody.cookies.set(SESSION_COOKIE, "forged.cookie.value")
    error_of(await nobody.get("/api/me"), 401, "unauthorized")

    session = Session(kind=Role.STAFF, person_id="alice", csrf_token="c")
    stale = aged_signer(settings, timedelta(hours=12, minutes=1)).session_cookie(session)
    expired = new_client()
    expired.cookies.set(SESSION_COOKIE, stale)
    error_of(await expired.get("/api/me"), 401, "unauthorized")

    candidate = Session(kind=Role.CANDIDATE, person_id="cara", csrf_token="c", application_ids=())
    week_old = aged_signer(settings, 7 * DAY).session_cookie(candidate)
    returning = new_client()
    returning.cookies.set(SESSION_COOKIE, week_old)
    assert (await returning.get("/api/me")).status_code == 200


async def test_signing_out_drops_the_session(scene: Scene) -> None:
    response = await scene.alice.client.post(
        "/auth/sign-out", headers=scene.alice.csrf, follow_redirects=False
    )
    assert response.status_code == 303
    error_of(await scene.alice.client.get("/api/me"), 401, "unauthorized")


async def test_every_mutation_needs_the_csrf_header(scene: Scene) -> None:
    sent = (await scene.alice.send(scene.conversation, "Hello")).json()
    conversation = f"/api/conversations/{scene.conversation}"
    mutations: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "/api/me/settings", {"json": {"timezone": "Europe/Paris"}}),
        ("POST", f"{conversation}/messages", {"json": {"client_id": str(sent["id"])}}),
        ("POST", f"{conversation}/read", {"json": {"seq": 1}}),
        ("POST", f"{conversation}/unread", {}),
        ("POST", f"{conversation}/end", {}),
        ("POST", f"{conversation}/archive", {}),
        ("POST", f"{conversation}/unarchive", {}),
        ("DELETE", f"/api/messages/{sent['id']}", {"params": {"for": "everyone"}}),
        ("POST", "/api/attachments", {"files": {"file": ("a.txt", b"hi", "text/plain")}}),
        ("POST", "/api/notifications/read", {}),
    ]
    for method, path, kwargs in mutations:
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
            response = await scene.alice.client.request(method, path, headers=headers, **kwargs)
            error_of(response, 403, "forbidden")
    history = await scene.alice.history(scene.conversation)
    assert [(m["seq"], m["deleted"]) for m in history] == [(1, False)]
    me = (await scene.alice.client.get("/api/me")).json()
    assert me["timezone"] == "UTC"


async def test_the_csrf_token_belongs_to_one_session(scene: Scene) -> None:
    response = await scene.alice.client.put(
        "/api/me/settings", json={"timezone": "Europe/Paris"}, headers=scene.bob.csrf
    )
    error_of(response, 403, "forbidden")
    response = await scene.alice.client.put(
        "/api/me/settings", json={"timezone": "Europe/Paris"}, headers=scene.alice.csrf
    )
    assert response.status_code == 200, response.text


async def test_an_https_deployment_sets_a_secure_lax_cookie(host: Host, settings: Settings) -> None:
    """Lax unless an embedding host is configured: an email link (a top-level
    navigation) still carries it, no cross-site request does."""
    await host.staff("alice")
    async with other_app(settings.with_(base_url="https://chat.example")) as make:
        browser = make()
        issued = await browser.post(
            "/api/v1/staff/alice/login-link", headers={"Authorization": "Bearer test-api-key"}
        )
        url = issued.json()["url"]
        assert url.startswith("https://chat.example/auth/staff?token=")
        response = await open_link(browser, url)
        cookie = response.headers["set-cookie"].lower()
        assert "secure" in cookie
        assert "samesite=lax" in cookie
        assert "samesite=none" not in cookie
        assert "httponly" in cookie


async def test_an_embedding_host_gets_a_samesite_none_secure_cookie(
    host: Host, settings: Settings
) -> None:
    await host.staff("alice")
    embedded = settings.with_(
        base_url="https://chat.example", frame_ancestors=("https://ats.example",)
    )
    async with other_app(embedded) as make:
        browser = make()
        issued = await browser.post(
            "/api/v1/staff/alice/login-link", headers={"Authorization": "Bearer test-api-key"}
        )
        response = await open_link(browser, issued.json()["url"])
        cookie = response.headers["set-cookie"].lower()
        assert "samesite=none" in cookie
        assert "secure" in cookie
        assert (
            "frame-ancestors 'self' https://ats.example"
            in response.headers["content-security-policy"]
        )


async def test_used_staff_tokens_are_forgotten_once_their_links_have_expired(
    app: Any, host: Host, new_client: Any
) -> None:
    """Single use needs a token remembered only while its link is valid."""
    async with app.state.services.chat.db.transaction() as conn:
        await conn.execute(
            used_login_tokens.insert().values(
                token_id="long-gone",
                used_at=utcnow() - 6 * MINUTE,
                expires_at=utcnow() - MINUTE,
            )
        )
    await host.staff("alice")
    assert (await open_link(new_client(), await host.staff_link("alice"))).status_code == 303
    assert await count_rows(app, used_login_tokens, token_id="long-gone") == 0
    assert await count_rows(app, used_login_tokens) == 1
