"""Exactly once with real `chatserver notifier` processes on PostgreSQL:
two at a time, and one killed with SIGKILL mid-batch and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from chatserver.chat.presence import MemoryPresence
from chatserver.notify.worker import POSTGRES_SENDERS, Notifier
from chatserver.settings import Settings
from chatserver.store.tables import candidates, outgoing_emails
from tests.conftest import SECRET, Scene
from tests.helpers import Host
from tests.notify.conftest import WAIT_SECONDS, SmtpServer
from tests.waits import eventually_async

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["production"])]

ROOT = Path(__file__).resolve().parents[2]
DELAY = 120.0


class Processes:
    """`python -m chatserver notifier` children, stopped (or killed) at the end."""

    def __init__(self, settings: Settings, smtp: SmtpServer, logs: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "CHAT_SECRET_KEYS": SECRET,
            "CHAT_SMTP_URL": smtp.url,
            "CHAT_BASE_URL": settings.base_url,
            "CHAT_NOTIFY_DELAY_SECONDS": str(DELAY),
        }
        self.env.pop("REDIS_URL", None)
        self.logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"notifier-{len(self.children)}.log").open("wb")
        child = subprocess.Popen(
            [sys.executable, "-m", "chatserver", "notifier"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.children.append(child)
        return child

    def log_of(self, index: int) -> str:
        return (self.logs / f"notifier-{index}.log").read_text()

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
def processes(settings: Settings, smtp: SmtpServer, tmp_path: Path) -> Iterator[Processes]:
    group = Processes(settings, smtp, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


async def plan_emails(
    count: int, scene: Scene, host: Host, app: Any, settings: Settings, smtp: SmtpServer
) -> None:
    """`count` candidates, each with an unread staff message, planned as due."""
    for i in range(count):
        created = await host.application(f"app-p{i}", candidate=f"cand{i}", status="interviewing")
        response = await scene.alice.send(created["conversation_id"], f"Hello number {i}")
        assert response.status_code == 201, response.text
    # Planned by a notifier with no delay, so that the emails are due now.
    immediate = settings.with_(notify_delay_seconds=0)
    planner = Notifier(app.state.services.chat, immediate, MemoryPresence())
    assert await planner.plan() == count


async def statuses(app: Any) -> Counter[str]:
    async with app.state.services.chat.db.transaction() as conn:
        rows = await conn.execute(select(outgoing_emails.c.status))
        return Counter(str(status) for (status,) in rows)


def recipients(smtp: SmtpServer) -> Counter[str]:
    return Counter(str(m["To"]) for m in smtp.bag.messages())


async def test_two_notifiers_on_one_database_send_each_email_once(
    scene: Scene,
    host: Host,
    app: Any,
    settings: Settings,
    smtp: SmtpServer,
    processes: Processes,
) -> None:
    count = 40
    await plan_emails(count, scene, host, app, settings, smtp)
    smtp.bag.rcpt_delay = 0.1  # long enough that both processes get a share
    processes.start()
    processes.start()
    await smtp.bag.wait_for(count)
    await asyncio.sleep(1.0)  # time for any duplicate to show up
    processes.stop_all()

    delivered = recipients(smtp)
    assert len(smtp.bag.messages()) == count
    assert set(delivered.values()) == {1}
    assert len({m["Message-ID"] for m in smtp.bag.messages()}) == count
    assert await statuses(app) == Counter({"sent": count})
    # Both took part: each claimed emails the other skipped.
    assert "sent email" in processes.log_of(0)
    assert "sent email" in processes.log_of(1)


async def test_a_notifier_killed_mid_batch_resends_nothing_and_loses_nothing(
    scene: Scene,
    host: Host,
    app: Any,
    settings: Settings,
    smtp: SmtpServer,
    processes: Processes,
) -> None:
    count = 12
    await plan_emails(count, scene, host, app, settings, smtp)
    # After three deliveries the server holds every sender at RCPT: the
    # notifier is then mid-conversation on every email it has claimed.
    smtp.bag.stall_after = 3
    first = processes.start()
    await eventually_async(
        lambda: smtp.bag.stalled >= POSTGRES_SENDERS,
        within=WAIT_SECONDS,
        what="the notifier stalling",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=WAIT_SECONDS)
    delivered_before = len(smtp.bag.messages())
    assert delivered_before >= 3
    smtp.bag.release.set()

    # What was sent is recorded as sent; the claimed emails are pending again.
    await statuses_become(app, {"sent": delivered_before, "pending": count - delivered_before})

    processes.start()
    await smtp.bag.wait_for(count)
    await asyncio.sleep(1.0)  # time for any duplicate to show up
    assert len(smtp.bag.messages()) == count
    assert set(recipients(smtp).values()) == {1}
    assert await statuses(app) == Counter({"sent": count})


async def statuses_become(app: Any, expected: dict[str, int]) -> None:
    """The killed process's locks go when PostgreSQL notices the dead
    connection, which takes a moment."""

    async def reached() -> bool:
        return await statuses(app) == Counter(expected)

    await eventually_async(reached, within=WAIT_SECONDS, what=f"email statuses {expected}")


async def test_two_notifiers_send_everything_healthy_around_poisoned_rows(
    scene: Scene,
    host: Host,
    app: Any,
    settings: Settings,
    smtp: SmtpServer,
    processes: Processes,
) -> None:
    """Poisoned recipients among healthy ones, two real notifiers: each
    healthy email goes out once, each poisoned one is recorded as failing
    (never sent, never blocking), and both processes keep working."""
    count = 20
    poisoned = {
        "cand3": "pat@mail.example\r\nBcc: eve@evil.example",
        "cand8": "rit\u00e9@mail.example",
        "cand15": "quinn@mail.example>, <eve@evil.example",
    }
    conversations = [
        (await host.application(f"app-p{i}", candidate=f"cand{i}", status="interviewing"))[
            "conversation_id"
        ]
        for i in range(count)
    ]
    async with app.state.services.chat.db.transaction() as conn:
        for candidate, address in poisoned.items():
            await conn.execute(
                update(candidates).where(candidates.c.id == candidate).values(email=address)
            )
    for i, conversation in enumerate(conversations):
        response = await scene.alice.send(conversation, f"Hello number {i}")
        assert response.status_code == 201, response.text
    # Both notifiers are up and polling often before anything is due, and
    # each email takes a while to deliver, so both take part.
    processes.env["CHAT_NOTIFY_POLL_SECONDS"] = "0.3"
    smtp.bag.rcpt_delay = 0.3
    processes.start()
    processes.start()
    await eventually_async(
        lambda: all("notifier started" in processes.log_of(i) for i in (0, 1)),
        within=WAIT_SECONDS,
        what="both notifiers starting",
    )
    # The running notifiers hold the planner lock now and then: plan until
    # every email is recorded (a pass that finds the lock taken plans none).
    planner = Notifier(
        app.state.services.chat, settings.with_(notify_delay_seconds=0), MemoryPresence()
    )
    planned = 0

    async def all_planned() -> bool:
        nonlocal planned
        planned += await planner.plan()
        return planned >= count

    await eventually_async(
        all_planned, within=WAIT_SECONDS, what=lambda: f"planned {planned} of {count}"
    )
    assert planned == count
    healthy = count - len(poisoned)
    await smtp.bag.wait_for(healthy)
    last: Counter[str] = Counter()

    async def poisoned_recorded() -> bool:
        nonlocal last
        last = await statuses(app)
        return last["pending"] == len(poisoned) and not any(
            row["attempts"] == 0 for row in await rows_of(app, poisoned)
        )

    await eventually_async(poisoned_recorded, within=WAIT_SECONDS, what=lambda: str(last))
    await asyncio.sleep(1.0)  # time for any duplicate to show up
    processes.stop_all()

    assert len(smtp.bag.messages()) == healthy
    assert set(recipients(smtp).values()) == {1}
    assert not any("evil" in address for address in smtp.bag.rcpt_to())
    assert await statuses(app) == Counter({"sent": healthy, "pending": len(poisoned)})
    for row in await rows_of(app, poisoned):
        assert row["attempts"] == 1
        assert row["last_error"].startswith("composing failed: ")
    logs = processes.log_of(0) + processes.log_of(1)
    assert logs.count("composing failed") == len(poisoned)
    assert "sent email" in processes.log_of(0)
    assert "sent email" in processes.log_of(1)


async def rows_of(app: Any, people: dict[str, str]) -> list[Any]:
    async with app.state.services.chat.db.transaction() as conn:
        query = select(outgoing_emails).where(outgoing_emails.c.recipient_id.in_(list(people)))
        return list((await conn.execute(query)).mappings())
