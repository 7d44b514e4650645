"""Issue 9 item 3: addresses and names from the host.

An email is exactly one address (checked by `email-validator`); an
internationalised domain is stored in the IDNA form every mail server
accepts; a non-ASCII local part (SMTPUTF8, which the notifier does not
speak) is refused at the API rather than accepted and failing later.
Control characters are refused in every name and title.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatserver.clock import utcnow
from chatserver.notify.mime import Draft, build_message, mailbox
from chatserver.store.tables import candidates, staff
from tests.helpers import AUTH, Host, count_rows, error_of

STAFF: dict[str, Any] = {
    "org": {"id": "acme", "name": "Acme"},
    "name": "Rita Recruiter",
    "email": "rita@example.com",
}
APPLICATION: dict[str, Any] = {
    "org": {"id": "acme", "name": "Acme"},
    "job": {"id": "job-1", "title": "Teacher of Physics"},
    "candidate": {"id": "cand-1", "name": "Cara", "email": "cara@mail.example"},
    "status": "submitted",
    "applied_at": "2026-11-02T09:30:00Z",
}

NOT_ONE_ADDRESS = [
    "rita@example.com>, <attacker@evil.example",
    "rita@example.com, attacker@evil.example",
    "Rita <rita@example.com>",
    "rita@example.com\r\nBcc: attacker@evil.example",
    "rita@example.com\nattacker@evil.example",
    '"rita@example.com"@evil.example',
    "rita",
    "rita@",
    "@example.com",
    "rita@localhost",
    "rita@example",
    "rita@@example.com",
    "rïta@example.com",  # needs SMTPUTF8
    "x" * 310 + "@example.com",
    "",
]

CONTROL_CHARACTERS = [
    "Rita\r\nBcc: x@evil.example",
    "Rita\x00",
    "Rita\x1b[31m",
    "Rita\u2028Smith",
    # Bidi overrides and isolates: "Rita\u202e sent you a message" reads backwards.
    "Rita \u202egnp.exe",
    "Rita \u2067Smith",
]


def staff_body(**changes: Any) -> dict[str, Any]:
    return {**STAFF, **changes}


def application_body(candidate: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    return {
        **APPLICATION,
        "candidate": {**APPLICATION["candidate"], **(candidate or {})},
        **changes,
    }


@pytest.mark.parametrize("address", NOT_ONE_ADDRESS)
async def test_anything_but_one_deliverable_address_is_invalid(host: Host, address: str) -> None:
    response = await host.client.put(
        "/api/v1/staff/rita", json=staff_body(email=address), headers=AUTH
    )
    error_of(response, 422, "invalid")
    response = await host.client.put(
        "/api/v1/applications/app-1", json=application_body({"email": address}), headers=AUTH
    )
    error_of(response, 422, "invalid")


async def test_refused_input_stores_nothing(host: Host, app: Any) -> None:
    await host.client.put(
        "/api/v1/staff/rita", json=staff_body(email=NOT_ONE_ADDRESS[0]), headers=AUTH
    )
    await host.client.put(
        "/api/v1/applications/app-1",
        json=application_body({"email": NOT_ONE_ADDRESS[0]}),
        headers=AUTH,
    )
    assert await count_rows(app, staff) == 0
    assert await count_rows(app, candidates) == 0


async def test_an_internationalised_domain_is_kept_in_its_deliverable_form(host: Host) -> None:
    response = await host.client.put(
        "/api/v1/staff/rita", json=staff_body(email="Rita@Bücher.example"), headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "Rita@xn--bcher-kva.example"


async def test_a_stored_address_makes_a_well_formed_email(host: Host, app: Any) -> None:
    """What the API accepts, the notifier can address: one recipient, ASCII."""
    await host.client.put(
        "/api/v1/applications/app-1",
        json=application_body({"email": "cara@bücher.example", "name": "Cara, Jr."}),
        headers=AUTH,
    )
    async with app.state.services.chat.db.transaction() as conn:
        row = (await conn.execute(candidates.select())).mappings().one()
    assert row["email"] == "cara@xn--bcher-kva.example"
    draft = Draft(
        from_name="Acme via chatserver",
        to_address=mailbox(row["name"], row["email"]),
        subject="Hello",
        text="hi",
        html="<p>hi</p>",
        unsubscribe_url="http://testserver/email/unsubscribe?token=t",
    )
    message = build_message(draft, "k", utcnow(), app.state.services.settings)
    assert message["To"].addresses[0].addr_spec == "cara@xn--bcher-kva.example"
    assert len(message["To"].addresses) == 1


@pytest.mark.parametrize("bad", CONTROL_CHARACTERS)
async def test_control_characters_are_refused_in_every_name_and_title(host: Host, bad: str) -> None:
    for body in (staff_body(name=bad), staff_body(org={"id": "acme", "name": bad})):
        error_of(
            await host.client.put("/api/v1/staff/rita", json=body, headers=AUTH), 422, "invalid"
        )
    for body in (
        application_body({"name": bad}),
        application_body(job={"id": "job-1", "title": bad}),
        application_body(org={"id": "acme", "name": bad}),
    ):
        response = await host.client.put("/api/v1/applications/app-1", json=body, headers=AUTH)
        error_of(response, 422, "invalid")


async def test_ordinary_names_pass(host: Host) -> None:
    for name in (
        "Zoë O'Brien-Ñúñez",
        "李小龙",
        "Renée\u00a0Dupont",
        "Ana María de la Cruz",
        "\u200fمحمد علي",  # an RTL mark stays allowed
    ):
        response = await host.client.put(
            "/api/v1/staff/rita", json=staff_body(name=name), headers=AUTH
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"] == name
