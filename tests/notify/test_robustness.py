"""One bad email never stops anyone else's (issue 9 item 4), and an email
not yet sent never carries a message deleted for everyone since (issue 8
item 2).

The poisoned rows are written straight into the database, as whatever a
host (or an older version of the host API) may have stored: the API now
refuses such values, and the notifier must survive them all the same.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select, update

from chatserver.notify import metrics
from chatserver.notify.sender import BACKOFF_FIRST, BACKOFF_MAX, MAX_ATTEMPTS
from chatserver.notify.worker import Notifier
from chatserver.store.tables import candidates, outgoing_emails, staff
from tests.conftest import Scene
from tests.helpers import Host, delete_message
from tests.notify.conftest import MovableClock, SmtpServer, text_of

DELAY = 120.0
HEALTHY = 8
# Stored addresses that must never be sent to (or half-sent to).
POISONED_ADDRESSES = {
    "crlf": "pat@mail.example\r\nBcc: eve@evil.example",
    "non-ascii": "rit\u00e9@mail.example",
    "two": "quinn@mail.example>, <eve@evil.example",
    "empty": "",
}


async def outgoing(app: Any) -> list[dict[str, Any]]:
    async with app.state.services.chat.db.transaction() as conn:
        rows = await conn.execute(select(outgoing_emails).order_by(outgoing_emails.c.id))
        return [dict(r) for r in rows.mappings()]


async def store(app: Any, table: Any, person_id: str, **values: str) -> None:
    async with app.state.services.chat.db.transaction() as conn:
        await conn.execute(update(table).where(table.c.id == person_id).values(**values))


def nobody_evil(smtp: SmtpServer) -> bool:
    """No email went to an address the poison tried to add, and each went
    to exactly one recipient."""
    recipients = smtp.bag.rcpt_to()
    return len(recipients) == len(smtp.bag.messages()) and not any(
        "evil" in address for address in recipients
    )


def counter(metric: Any) -> float:
    return float(metric._value.get())


async def a_crowd(scene: Scene, host: Host, app: Any) -> dict[str, str]:
    """HEALTHY candidates and one per poisoned address, each with an unread
    message from Alice; and Eve, whose name tries to add a Bcc header.
    Returns candidate id -> conversation."""
    conversations: dict[str, str] = {}
    names = [f"ok{i}" for i in range(HEALTHY)] + [f"bad-{k}" for k in POISONED_ADDRESSES]
    for candidate in [*names, "eve"]:
        created = await host.application(
            f"app-{candidate}", candidate=candidate, status="interviewing"
        )
        conversations[candidate] = created["conversation_id"]
    for kind, address in POISONED_ADDRESSES.items():
        await store(app, candidates, f"bad-{kind}", email=address)
    await store(app, candidates, "eve", name="Eve\r\nBcc: eve@evil.example")
    for conversation in conversations.values():
        response = await scene.alice.send(conversation, "Please confirm Monday at 10:00")
        assert response.status_code == 201, response.text
    return conversations


async def test_poisoned_rows_fail_alone_and_give_up_after_bounded_retries(
    scene: Scene,
    host: Host,
    app: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await a_crowd(scene, host, app)
    errors_before = metrics.EMAIL_ERRORS.labels("compose")._value.get()
    failed_before = counter(metrics.EMAILS_FAILED)
    clock.advance(DELAY + 1)

    result = await notifier.run_once()
    # Every email was planned: no stored value can stop a planning pass.
    assert result.planned == HEALTHY + len(POISONED_ADDRESSES) + 1
    delivered = Counter(str(m["To"]) for m in smtp.bag.messages())
    assert len(delivered) == HEALTHY + 1
    assert set(delivered.values()) == {1}
    for i in range(HEALTHY):
        assert delivered[f"Ok{i} <ok{i}@mail.example>"] == 1
    # Eve's email went to Eve alone, her name on one line and no Bcc.
    [eve] = smtp.bag.to("eve@mail.example")
    assert [a.addr_spec for a in eve["To"].addresses] == ["eve@mail.example"]
    assert eve["Bcc"] is None
    assert eve["To"].addresses[0].display_name == "Eve Bcc: eve@evil.example"
    assert nobody_evil(smtp)

    rows = {r["recipient_id"]: r for r in await outgoing(app)}
    for kind in POISONED_ADDRESSES:
        row = rows[f"bad-{kind}"]
        assert (row["status"], row["attempts"]) == ("pending", 1), kind
        assert row["last_error"].startswith("composing failed: "), row["last_error"]
        assert row["subject"] == row["text_body"] == ""
    assert metrics.EMAIL_ERRORS.labels("compose")._value.get() - errors_before == len(
        POISONED_ADDRESSES
    )

    # Retried with backoff, a bounded number of times, then given up on,
    # while new emails to healthy people keep going out in between.
    caplog.set_level(logging.ERROR, logger="chatserver.notify.sender")
    # Half the first backoff: the clock is real time plus an offset, and a
    # loaded machine spends more than a second between the failures above
    # and this pass (CI once found the rows due after `- 1`).
    clock.advance(BACKOFF_FIRST.total_seconds() / 2)
    assert (await notifier.run_once()).handled == 0  # backing off
    for attempt in range(2, MAX_ATTEMPTS + 1):
        clock.advance(BACKOFF_MAX.total_seconds())
        await notifier.run_once()
        rows = {r["recipient_id"]: r for r in await outgoing(app)}
        expected = "failed" if attempt == MAX_ATTEMPTS else "pending"
        for kind in POISONED_ADDRESSES:
            assert (rows[f"bad-{kind}"]["status"], rows[f"bad-{kind}"]["attempts"]) == (
                expected,
                attempt,
            )
    clock.advance(24 * 3600)
    assert (await notifier.run_once()).handled == 0  # failed is final
    assert counter(metrics.EMAILS_FAILED) - failed_before == len(POISONED_ADDRESSES)
    given_up = [r for r in caplog.records if "giving up on email" in r.getMessage()]
    assert len(given_up) == len(POISONED_ADDRESSES)
    assert nobody_evil(smtp)
    assert len(smtp.bag.messages()) == HEALTHY + 1


async def test_a_row_fixed_by_the_host_is_composed_afresh_and_sent(
    scene: Scene,
    host: Host,
    app: Any,
    notifier: Notifier,
    smtp: SmtpServer,
    clock: MovableClock,
) -> None:
    conversations = await a_crowd(scene, host, app)
    clock.advance(DELAY + 1)
    await notifier.run_once()
    # The host corrects one address and the staff name in between tries.
    await store(app, candidates, "bad-two", email="quinn@mail.example")
    clock.advance(BACKOFF_FIRST.total_seconds())
    await notifier.run_once()
    [quinn] = smtp.bag.to("quinn@mail.example")
    assert "Please confirm Monday at 10:00" in text_of(quinn)
    assert conversations["bad-two"]  # its own conversation's email, once
    rows = {r["recipient_id"]: r for r in await outgoing(app)}
    assert (rows["bad-two"]["status"], rows["bad-two"]["attempts"]) == ("sent", 2)
    assert rows["bad-two"]["to_address"] == "Bad-Two <quinn@mail.example>"


async def test_a_poisoned_staff_address_does_not_stop_colleagues_or_candidates(
    scene: Scene, app: Any, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    await store(app, staff, "bob", email="bob@acme.example\nBcc: eve@evil.example")
    await store(app, staff, "alice", name="Alice\x07\x1b[31m Recruiter")
    await scene.alice.send(scene.conversation, "Hello Cara")
    await scene.cara.send(scene.conversation, "Hello Alice")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [to_alice] = smtp.bag.to("alice@acme.example")
    assert str(to_alice["To"]) == '"Alice [31m Recruiter" <alice@acme.example>'
    assert len(smtp.bag.to("cara@mail.example")) == 1
    assert nobody_evil(smtp)
    rows = {r["recipient_id"]: r for r in await outgoing(app)}
    assert rows["bob"]["status"] == "pending"
    assert "composing failed" in rows["bob"]["last_error"]


# -- deleted for everyone: never in an email not yet sent ------------------------------


async def test_a_message_deleted_after_planning_is_not_in_the_email(
    scene: Scene, app: Any, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    secret = await scene.alice.send(scene.conversation, "The salary is 41,000, keep it quiet")
    await scene.alice.send(scene.conversation, "See you on Monday")
    clock.advance(DELAY + 1)
    assert await notifier.plan() == 1  # planned: both messages are unread
    response = await delete_message(scene.alice, secret.json()["id"], "everyone")
    assert response.status_code == 204
    await notifier.send_due()
    [email] = smtp.bag.messages()
    assert "See you on Monday" in text_of(email)
    assert "salary" not in email.as_string()
    assert "Alice Recruiter at Acme sent you a message" in str(email["Subject"])
    [row] = await outgoing(app)
    assert row["status"] == "sent"
    assert "salary" not in row["text_body"] + row["html_body"] + row["subject"]


async def test_an_email_waiting_to_retry_loses_a_deleted_message_or_is_dropped(
    scene: Scene, app: Any, notifier: Notifier, smtp: SmtpServer, clock: MovableClock
) -> None:
    smtp.bag.refuse_next = 1  # the first try meets "451 Not now"
    only = await scene.alice.send(scene.conversation, "Wrong candidate, sorry: Bob's offer")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [row] = await outgoing(app)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert (await delete_message(scene.alice, only.json()["id"], "everyone")).status_code == 204
    clock.advance(BACKOFF_FIRST.total_seconds())
    await notifier.run_once()
    assert smtp.bag.messages() == []
    [row] = await outgoing(app)
    assert row["status"] == "cancelled"
    assert "offer" not in row["text_body"] + row["html_body"] + row["subject"]
