"""Delivery: retries with backoff, permanent failures, and emails whose
messages were read while SMTP was down."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from chatserver.chat.presence import MemoryPresence
from chatserver.notify import metrics
from chatserver.notify.sender import BACKOFF_FIRST
from chatserver.notify.transport import SmtpTransport
from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from chatserver.store.tables import outgoing_emails
from scripts.load.processes import free_port
from tests.conftest import Scene
from tests.notify.conftest import MovableClock, SmtpServer, text_of

DELAY = 120.0


async def outgoing(app: Any) -> list[dict[str, Any]]:
    async with app.state.services.chat.db.transaction() as conn:
        rows = await conn.execute(select(outgoing_emails).order_by(outgoing_emails.c.id))
        return [dict(r) for r in rows.mappings()]


def counter(metric: Any) -> float:
    return float(metric._value.get())


async def test_an_smtp_server_that_refuses_then_accepts_gets_the_email_once(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, app: Any
) -> None:
    smtp.bag.refuse_next = 2  # "451 Not now", twice
    retries_before = counter(metrics.EMAIL_RETRIES)
    sent_before = counter(metrics.EMAILS_SENT)
    await scene.alice.send(scene.conversation, "Hello Cara")
    clock.advance(DELAY + 1)

    await notifier.run_once()
    [row] = await outgoing(app)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"].startswith("451")
    assert metrics.EMAIL_BACKLOG._value.get() == 1

    clock.advance(BACKOFF_FIRST.total_seconds() - 1)
    assert (await notifier.run_once()).handled == 0  # backing off
    clock.advance(1)
    await notifier.run_once()  # refused again; now waits twice as long
    [row] = await outgoing(app)
    assert (row["status"], row["attempts"]) == ("pending", 2)
    clock.advance(BACKOFF_FIRST.total_seconds())
    assert (await notifier.run_once()).handled == 0
    clock.advance(BACKOFF_FIRST.total_seconds())
    await notifier.run_once()

    [email] = smtp.bag.messages()
    assert "Hello Cara" in text_of(email)
    [row] = await outgoing(app)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert counter(metrics.EMAIL_RETRIES) - retries_before == 2
    assert counter(metrics.EMAILS_SENT) - sent_before == 1
    assert metrics.EMAIL_BACKLOG._value.get() == 0
    clock.advance(3600)
    await notifier.run_once()
    assert len(smtp.bag.messages()) == 1


async def test_a_permanent_refusal_is_not_retried(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, app: Any
) -> None:
    smtp.bag.refuse_next, smtp.bag.refuse_code = 1, 550
    await scene.alice.send(scene.conversation, "Hello")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    clock.advance(24 * 3600)
    assert (await notifier.run_once()).handled == 0
    assert smtp.bag.messages() == []
    [row] = await outgoing(app)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("550")


async def test_messages_read_while_smtp_was_down_are_not_emailed_afterwards(
    scene: Scene, notifier: Notifier, smtp: SmtpServer, clock: MovableClock, app: Any
) -> None:
    smtp.bag.refuse_next = 1
    sent = await scene.alice.send(scene.conversation, "Hello")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    read = await scene.cara.post(
        f"/api/conversations/{scene.conversation}/read", {"seq": sent.json()["seq"]}
    )
    assert read.status_code == 204, read.text
    clock.advance(BACKOFF_FIRST.total_seconds())
    await notifier.run_once()
    assert smtp.bag.messages() == []
    assert [r["status"] for r in await outgoing(app)] == ["cancelled"]


async def test_an_unreachable_server_keeps_the_email_pending(
    scene: Scene, settings: Settings, clock: MovableClock, app: Any
) -> None:
    nowhere = SmtpTransport(f"smtp://127.0.0.1:{free_port()}")
    notifier = Notifier(
        app.state.services.chat, settings, MemoryPresence(), transport=nowhere, clock=clock
    )
    await scene.alice.send(scene.conversation, "Hello")
    clock.advance(DELAY + 1)
    await notifier.run_once()
    [row] = await outgoing(app)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"]
