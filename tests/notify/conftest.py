"""A real SMTP server on loopback, a movable clock, and a notifier wired to
the test app's domain."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from chatserver.chat.presence import MemoryPresence
from chatserver.clock import utcnow
from chatserver.notify.transport import SmtpTransport
from chatserver.notify.worker import Notifier
from chatserver.settings import Settings
from chatserver.web.deps import Services
from scripts.load.processes import free_port
from tests.waits import eventually_async

# Long enough for a loaded CI machine, short enough to fail a test quickly.
WAIT_SECONDS = 30.0


@dataclass
class Mailbag:
    """What the SMTP server received, and how it should behave next.

    The handler runs on the controller's thread: everything it shares with
    the test goes through the lock or a threading primitive.
    """

    received: list[EmailMessage] = field(default_factory=list)
    # Each received email as it came over the wire (DATA's bytes), for what
    # a parser would hide (how its headers are folded and encoded).
    raw: list[bytes] = field(default_factory=list)
    # The envelope recipients (RCPT TO) of each received email: where it
    # really went, whatever its headers say.
    envelopes: list[list[str]] = field(default_factory=list)
    refuse_next: int = 0  # answer DATA with this code this many more times
    refuse_code: int = 451
    # From this many deliveries on, RCPT waits until `release` is set.
    stall_after: int | None = None
    stalled: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    rcpt_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.received)

    def raw_messages(self) -> list[bytes]:
        with self.lock:
            return list(self.raw)

    def rcpt_to(self) -> list[str]:
        with self.lock:
            return [address for envelope in self.envelopes for address in envelope]

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages() if address in str(m["To"])]

    async def wait_for(self, count: int, within: float = WAIT_SECONDS) -> list[EmailMessage]:
        await eventually_async(
            lambda: len(self.messages()) >= count,
            within=within,
            what=lambda: f"got {len(self.messages())} emails, expected {count}",
        )
        return self.messages()


class Handler:
    def __init__(self, bag: Mailbag) -> None:
        self.bag = bag

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        bag = self.bag
        if bag.rcpt_delay:
            await asyncio.sleep(bag.rcpt_delay)
        with bag.lock:
            stall = bag.stall_after is not None and len(bag.received) >= bag.stall_after
            if stall:
                bag.stalled += 1
        if stall:
            await asyncio.to_thread(bag.release.wait)
            with bag.lock:
                bag.stalled -= 1
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.bag.lock:
            if self.bag.refuse_next > 0:
                self.bag.refuse_next -= 1
                return f"{self.bag.refuse_code} Not now"
            content = envelope.original_content or envelope.content
            assert isinstance(content, bytes)
            message = message_from_bytes(content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.bag.received.append(message)
            self.bag.raw.append(content)
            self.bag.envelopes.append(list(envelope.rcpt_tos))
        return "250 Message accepted"


@dataclass
class SmtpServer:
    bag: Mailbag
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    bag = Mailbag()
    port = free_port()
    controller = Controller(Handler(bag), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(bag, port)
    finally:
        bag.release.set()
        controller.stop()


class MovableClock:
    """Real time plus an offset the test moves forward, so stored messages
    (stamped by the app's real clock) and the notifier agree on "now"."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        self.offset = timedelta()

    def set(self, at: datetime) -> None:
        self.offset = at - utcnow()


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def presence() -> MemoryPresence:
    return MemoryPresence()


@pytest.fixture
async def notifier(
    app: Any, settings: Settings, smtp: SmtpServer, clock: MovableClock, presence: MemoryPresence
) -> Notifier:
    services = app.state.services
    assert isinstance(services, Services)
    return Notifier(
        services.chat, settings, presence, transport=SmtpTransport(smtp.url), clock=clock
    )


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def subject(message: EmailMessage) -> str:
    """The subject as a reader sees it (a long one arrives folded)."""
    return " ".join(str(message["Subject"]).split())
