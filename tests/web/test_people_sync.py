"""Issue 8 item 4: the host's re-sync never wipes what a person chose.

The host's timezone and email-notification values are defaults until the
person chooses in Settings; the person's choice wins from then on; a field
the host leaves out keeps its stored value. Same for candidates, whose
values ride on the application upsert. Checked against a plain model over
seeded random sequences of host syncs and Settings changes, on both
backends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import httpx

from tests.helpers import AUTH, Host, Person, sign_in_candidate, sign_in_staff

ZONES = ["UTC", "Europe/London", "Europe/Paris", "America/New_York", "Asia/Tokyo"]
CHOICES = ["each", "daily", "off"]
STEPS = 40
SEEDS = (1, 2, 3)


@dataclass
class Model:
    """What the person's settings must be, by the rules of the issue."""

    timezone: str = "UTC"
    notifications: str = "each"
    timezone_chosen: bool = False
    notifications_chosen: bool = False

    def host(self, timezone: str | None, notifications: str | None) -> None:
        if timezone is not None and not self.timezone_chosen:
            self.timezone = timezone
        if notifications is not None and not self.notifications_chosen:
            self.notifications = notifications

    def person(self, timezone: str | None, notifications: str | None) -> None:
        if timezone is not None:
            self.timezone, self.timezone_chosen = timezone, True
        if notifications is not None:
            self.notifications, self.notifications_chosen = notifications, True


def staff_body(timezone: str | None, notifications: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "org": {"id": "acme", "name": "Acme"},
        "name": "Alice Recruiter",
        "email": "alice@acme.example",
    }
    if timezone is not None:
        body["timezone"] = timezone
    if notifications is not None:
        body["email_notifications"] = notifications
    return body


def application_body(timezone: str | None, notifications: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"id": "cara", "name": "Cara", "email": "cara@mail.example"}
    if timezone is not None:
        candidate["timezone"] = timezone
    if notifications is not None:
        candidate["email_notifications"] = notifications
    return {
        "org": {"id": "acme", "name": "Acme"},
        "job": {"id": "acme-job-1", "title": "Teacher of Mathematics"},
        "candidate": candidate,
        "status": "interviewing",
        "applied_at": "2026-11-02T09:30:00Z",
    }


def maybe(rng: random.Random, values: list[str]) -> str | None:
    return rng.choice(values) if rng.random() < 0.6 else None


async def me(person: Person) -> tuple[str, str]:
    response = await person.client.get("/api/me")
    assert response.status_code == 200, response.text
    return response.json()["timezone"], response.json()["email_notifications"]


async def test_a_new_staff_user_gets_the_hosts_values_or_the_defaults(host: Host) -> None:
    response = await host.client.put(
        "/api/v1/staff/alice", json=staff_body(None, None), headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert (response.json()["timezone"], response.json()["email_notifications"]) == (
        "UTC",
        "each",
    )
    response = await host.client.put(
        "/api/v1/staff/bob", json=staff_body("Asia/Tokyo", "daily"), headers=AUTH
    )
    assert (response.json()["timezone"], response.json()["email_notifications"]) == (
        "Asia/Tokyo",
        "daily",
    )


async def test_staff_settings_survive_every_re_sync(host: Host, new_client: Any) -> None:
    await host.client.put("/api/v1/staff/alice", json=staff_body(None, None), headers=AUTH)
    alice = await sign_in_staff(host, new_client(), "alice")
    for seed in SEEDS:
        rng = random.Random(seed)
        model = Model()
        # Each seed starts from a fresh person: a new staff id.
        staff_id = f"alice-{seed}"
        response = await host.client.put(
            f"/api/v1/staff/{staff_id}", json=staff_body(None, None), headers=AUTH
        )
        assert response.status_code == 200, response.text
        person = await sign_in_staff(host, new_client(), staff_id)
        for step in range(STEPS):
            timezone, notifications = maybe(rng, ZONES), maybe(rng, CHOICES)
            if rng.random() < 0.7:
                model.host(timezone, notifications)
                response = await host.client.put(
                    f"/api/v1/staff/{staff_id}",
                    json=staff_body(timezone, notifications),
                    headers=AUTH,
                )
                assert response.status_code == 200, response.text
                answered = (response.json()["timezone"], response.json()["email_notifications"])
                assert answered == (model.timezone, model.notifications), (seed, step)
            else:
                change = {
                    k: v
                    for k, v in (("timezone", timezone), ("email_notifications", notifications))
                    if v is not None
                }
                model.person(timezone, notifications)
                response = await person.client.put(
                    "/api/me/settings", json=change, headers=person.csrf
                )
                assert response.status_code == 200, response.text
            assert await me(person) == (model.timezone, model.notifications), (seed, step)
    assert await me(alice) == ("UTC", "each")


async def test_candidate_settings_survive_every_application_re_sync(
    host: Host, new_client: Any
) -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        model = Model()
        app_id = f"app-{seed}"
        body = application_body(None, None)
        body["candidate"]["id"] = f"cara-{seed}"
        response = await host.client.put(f"/api/v1/applications/{app_id}", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        cara = await sign_in_candidate(host, new_client(), app_id)
        for step in range(STEPS):
            timezone, notifications = maybe(rng, ZONES), maybe(rng, CHOICES)
            if rng.random() < 0.7:
                model.host(timezone, notifications)
                body = application_body(timezone, notifications)
                body["candidate"]["id"] = f"cara-{seed}"
                response = await host.client.put(
                    f"/api/v1/applications/{app_id}", json=body, headers=AUTH
                )
                assert response.status_code == 200, response.text
            else:
                change = {
                    k: v
                    for k, v in (("timezone", timezone), ("email_notifications", notifications))
                    if v is not None
                }
                model.person(timezone, notifications)
                response = await cara.client.put("/api/me/settings", json=change, headers=cara.csrf)
                assert response.status_code == 200, response.text
            assert await me(cara) == (model.timezone, model.notifications), (seed, step)


async def test_the_recruiter_from_the_issue_keeps_her_zone(host: Host, new_client: Any) -> None:
    """The reported path: the host syncs with its zone, she picks another in
    Settings, the routine sync runs again (with and without a zone)."""
    await host.client.put(
        "/api/v1/staff/rita", json=staff_body("Europe/London", None), headers=AUTH
    )
    rita = await sign_in_staff(host, new_client(), "rita")
    chosen = await rita.client.put(
        "/api/me/settings",
        json={"timezone": "America/New_York", "email_notifications": "daily"},
        headers=rita.csrf,
    )
    assert chosen.status_code == 200, chosen.text
    for body in (staff_body("Europe/London", "each"), staff_body(None, None)):
        synced = await host.client.put("/api/v1/staff/rita", json=body, headers=AUTH)
        assert synced.json()["timezone"] == "America/New_York"
        assert synced.json()["email_notifications"] == "daily"
        assert await me(rita) == ("America/New_York", "daily")


async def test_explicit_null_is_not_a_value(host: Host) -> None:
    body = {**staff_body(None, None), "timezone": None}
    response: httpx.Response = await host.client.put("/api/v1/staff/alice", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    body = {**staff_body(None, None), "email_notifications": "weekly"}
    response = await host.client.put("/api/v1/staff/alice", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
