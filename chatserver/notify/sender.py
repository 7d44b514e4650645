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

The email is composed right before it is sent (`compose.py`). Whatever goes
wrong with one email, composing it (a name or address the host stored that
cannot be put in a header) or sending it (a refusal, an exception from the
SMTP library), is recorded on that email: retried with backoff up to
MAX_ATTEMPTS times, then marked failed, logged and counted. It never stops
the others. Only a transport that looks down (refused connection, timeout,
421) ends a pass's sending early, since every other email would fail too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from enum import StrEnum

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.errors import ChatError
from chatserver.notify.compose import Composer
from chatserver.notify.metrics import (
    EMAIL_ERRORS,
    EMAIL_RETRIES,
    EMAILS_CANCELLED,
    EMAILS_FAILED,
    EMAILS_SENT,
)
from chatserver.notify.mime import Draft, build_message
from chatserver.notify.transport import DeliveryError, Transport
from chatserver.settings import Settings
from chatserver.store import emails, outbox
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# Retry after 30 s, then double each time up to an hour: a brief SMTP outage
# costs half a minute, a long one does not hammer the server, and after
# MAX_ATTEMPTS (about eight hours in all) the email is marked failed. The
# same schedule serves an email that cannot be composed: the host may fix
# the name or address meanwhile, and the email is composed afresh each try.
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
MAX_ATTEMPTS = 12
ERROR_CHARS = 500


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed try."""
    return min(BACKOFF_FIRST * (1 << min(attempts - 1, 16)), BACKOFF_MAX)


class Status(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    CANCELLED = "cancelled"  # nothing left to say: read, deleted, or emails turned off


class Stage(StrEnum):
    COMPOSE = "compose"
    DELIVER = "deliver"


@dataclass(frozen=True)
class Outcome:
    status: Status
    error: str = ""
    stage: Stage | None = None
    # The transport looks down: the pass stops sending, the rest wait.
    halt: bool = False
    draft: Draft | None = None


@dataclass(frozen=True)
class Prepared:
    draft: Draft
    message: EmailMessage


class Sender:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        transport: Transport,
        clock: Callable[[], datetime],
        composer: Composer | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._composer = composer or Composer(settings)

    async def drain(self, workers: int, stopping: asyncio.Event) -> int:
        """Send every email due now with `workers` concurrent senders; stops
        early when the transport looks down (the rest wait for the next
        pass) or on `stopping`. Returns the number of emails handled."""
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
            if outcome.halt:
                halt.set()
        return handled

    async def send_one(self) -> Outcome | None:
        """Claim, compose, send and record one due email; None when none is due.

        On PostgreSQL the claim is a row lock (`FOR UPDATE SKIP LOCKED`) held
        through the send, so concurrent notifiers never send the same email.
        SQLite has no row locks and one writer at a time: there the claim's
        transaction ends before the send, which must not hold the database.
        """
        now = self._clock()
        hold_claim = self._db.locks_rows
        async with self._db.transaction() as conn:
            row = await outbox.claim_due(conn, now)
            if row is None:
                return None
            prepared = await self._prepare(conn, row, now)
            if hold_claim:
                outcome = await self._send(row, prepared)
                await self._record(conn, row, outcome)
                return outcome
        outcome = await self._send(row, prepared)
        async with self._db.transaction() as conn:
            await self._record(conn, row, outcome)
        return outcome

    async def _prepare(
        self, conn: AsyncConnection, row: RowMapping, now: datetime
    ) -> Prepared | Outcome:
        """The email as it goes out now, or the outcome that makes sending moot."""
        try:
            draft = await self._composer.compose(conn, row, now)
            if draft is None:
                return Outcome(Status.CANCELLED)
            return Prepared(
                draft, build_message(draft, row["key"], row["created_at"], self._settings)
            )
        except (SQLAlchemyError, ChatError):
            raise  # the database is in trouble, not this email: the pass fails
        except Exception as exc:
            return _failure(row, Stage.COMPOSE, f"composing failed: {_describe(exc)}")

    async def _send(self, row: RowMapping, prepared: Prepared | Outcome) -> Outcome:
        if isinstance(prepared, Outcome):
            return prepared
        try:
            await self._transport.deliver(prepared.message)
        except DeliveryError as exc:
            if exc.permanent:
                return Outcome(Status.FAILED, str(exc), Stage.DELIVER)
            return _failure(row, Stage.DELIVER, str(exc), halt=exc.server_down)
        except Exception as exc:
            # Anything else the transport raises is about this one message.
            return _failure(row, Stage.DELIVER, f"sending failed: {_describe(exc)}")
        return Outcome(Status.SENT, draft=prepared.draft)

    async def _record(self, conn: AsyncConnection, row: RowMapping, outcome: Outcome) -> None:
        attempts = int(row["attempts"]) + 1
        now = self._clock()
        key = row["key"]
        if outcome.status is Status.SENT:
            assert outcome.draft is not None
            await outbox.mark_sent(conn, row["id"], attempts, now, outcome.draft.sent())
            await emails.move_cursors(
                conn, row["recipient_kind"], row["recipient_id"], outcome.draft.covers, now
            )
            EMAILS_SENT.inc()
            log.info("sent email %s (attempt %d)", key, attempts)
        elif outcome.status is Status.CANCELLED:
            await outbox.mark_cancelled(conn, row["id"])
            EMAILS_CANCELLED.inc()
            log.info("dropped email %s: nothing left to say (read, deleted or turned off)", key)
        elif outcome.status is Status.RETRY:
            wait = backoff(attempts)
            error = outcome.error[:ERROR_CHARS]
            await outbox.mark_retry(conn, row["id"], attempts, now + wait, error)
            EMAIL_RETRIES.inc()
            EMAIL_ERRORS.labels(str(outcome.stage)).inc()
            log.warning(
                "email %s failed (attempt %d of %d): %s; retrying in %ds",
                key,
                attempts,
                MAX_ATTEMPTS,
                error,
                wait.total_seconds(),
            )
        else:
            error = outcome.error[:ERROR_CHARS]
            await outbox.mark_failed(conn, row["id"], attempts, error)
            EMAILS_FAILED.inc()
            EMAIL_ERRORS.labels(str(outcome.stage)).inc()
            log.error("giving up on email %s after %d attempts: %s", key, attempts, error)


def _failure(row: RowMapping, stage: Stage, error: str, *, halt: bool = False) -> Outcome:
    """Retry with backoff, or fail once MAX_ATTEMPTS tries have failed."""
    last_try = int(row["attempts"]) + 1 >= MAX_ATTEMPTS
    return Outcome(Status.FAILED if last_try else Status.RETRY, error, stage, halt=halt)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
