"""Sending recorded emails, each at most once per successful delivery.

PostgreSQL: a sender claims one due email with `SELECT … FOR UPDATE SKIP
LOCKED` and keeps the row locked while it talks to SMTP, then marks it sent
and commits. Another notifier skips a locked row, so no two processes send
the same email. A notifier killed mid-send loses its connection, the
database rolls the transaction back and releases the lock, and the email is
simply pending again: nothing is lost, and only an email whose SMTP
acceptance happened in the last instant before the kill (between the
server's 250 and our COMMIT) can be sent a second time, with the same
Message-ID.

SQLite (the embedded default, one notifier): the row is read, sent outside
any transaction (SQLite has one writer for the whole file, which must not be
held during network I/O), then marked sent; the same single window applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.notify.compose import build_message
from chatserver.notify.metrics import EMAIL_RETRIES, EMAILS_CANCELLED, EMAILS_FAILED, EMAILS_SENT
from chatserver.notify.planner import parse_message_key
from chatserver.notify.transport import DeliveryError, Transport
from chatserver.settings import Settings
from chatserver.store import emails
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# Retry after 30 s, then double each time up to an hour: a brief SMTP outage
# costs half a minute, a long one does not hammer the server, and after
# MAX_ATTEMPTS (about eight hours in all) the email is marked failed.
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
MAX_ATTEMPTS = 12


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed try."""
    return min(BACKOFF_FIRST * (1 << min(attempts - 1, 16)), BACKOFF_MAX)


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | retry | failed | cancelled
    error: str = ""


class Sender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        transport: Transport,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._settings = settings
        self._transport = transport
        self._clock = clock

    async def drain(self, workers: int, stopping: asyncio.Event) -> int:
        """Send every email due now with `workers` concurrent senders; stops
        early when the transport has a temporary failure (the server is
        probably down: the rest wait for the next pass) or on `stopping`.
        Returns the number of emails handled."""
        halt = asyncio.Event()
        counts = await asyncio.gather(*(self._work(halt, stopping) for _ in range(workers)))
        return sum(counts)

    async def _work(self, halt: asyncio.Event, stopping: asyncio.Event) -> int:
        handled = 0
        while not halt.is_set() and not stopping.is_set():
            outcome = await self.send_one()
            if outcome is None:
                break
            handled += 1
            if outcome.status == "retry":
                halt.set()
        return handled

    async def send_one(self) -> Outcome | None:
        """Claim, send and record one due email; None when none is due."""
        now = self._clock()
        if self._db.is_sqlite:
            async with self._db.transaction() as conn:
                row = await emails.claim_due(conn, now)
                if row is None:
                    return None
                read = await _already_read(conn, row)
            outcome = Outcome("cancelled") if read else await self._deliver(row)
            async with self._db.transaction() as conn:
                await self._record(conn, row, outcome)
            return outcome
        async with self._db.transaction() as conn:
            row = await emails.claim_due(conn, now)
            if row is None:
                return None
            read = await _already_read(conn, row)
            outcome = Outcome("cancelled") if read else await self._deliver(row)
            await self._record(conn, row, outcome)
        return outcome

    async def _deliver(self, row: RowMapping) -> Outcome:
        try:
            await self._transport.deliver(build_message(row, self._settings))
        except DeliveryError as exc:
            if exc.permanent or row["attempts"] + 1 >= MAX_ATTEMPTS:
                return Outcome("failed", str(exc))
            return Outcome("retry", str(exc))
        return Outcome("sent")

    async def _record(self, conn: AsyncConnection, row: RowMapping, outcome: Outcome) -> None:
        attempts = int(row["attempts"]) + 1
        now = self._clock()
        if outcome.status == "sent":
            await emails.mark_sent(conn, row["id"], attempts, now)
            EMAILS_SENT.inc()
            log.info("sent email %s (attempt %d)", row["key"], attempts)
        elif outcome.status == "cancelled":
            await emails.mark_cancelled(conn, row["id"])
            EMAILS_CANCELLED.inc()
            log.info("dropped email %s: its messages were read", row["key"])
        elif outcome.status == "retry":
            wait = backoff(attempts)
            await emails.mark_retry(conn, row["id"], attempts, now + wait, outcome.error)
            EMAIL_RETRIES.inc()
            log.warning(
                "email %s failed (attempt %d): %s; retrying in %ds",
                row["key"],
                attempts,
                outcome.error,
                wait.total_seconds(),
            )
        else:
            await emails.mark_failed(conn, row["id"], attempts, outcome.error)
            EMAILS_FAILED.inc()
            log.error(
                "giving up on email %s after %d attempts: %s", row["key"], attempts, outcome.error
            )


async def _already_read(conn: AsyncConnection, row: RowMapping) -> bool:
    """A message email whose messages have all been read since it was
    planned (say, while SMTP was down) is not sent."""
    covered = parse_message_key(row["key"])
    if covered is None:
        return False
    conversation_id, last_seq = covered
    position = await emails.read_position(
        conn, conversation_id, row["recipient_kind"], row["recipient_id"]
    )
    return position >= last_seq
