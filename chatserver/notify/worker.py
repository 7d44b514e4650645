"""The notifier: every few seconds, plan what is due, then send it.

It runs inside the server in the embedded default (app.py starts
`Notifier.run_forever`) and as `chatserver notifier` in production, where
any number of them may run against one PostgreSQL database (see
docs/notifications.md for why each email still goes out once).

Being the one background loop that every deployment runs, it also deletes
uploads never sent and bytes that no file refers to (`uploads.tidy`), at
most once an hour; several notifiers doing so at once delete each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from datetime import datetime, timedelta

from chatserver.broker import broker_from_url
from chatserver.chat import uploads
from chatserver.chat.events import Events
from chatserver.chat.presence import presence_from_settings
from chatserver.chat.service import Chat
from chatserver.clock import Clock
from chatserver.notify.compose import Composer
from chatserver.notify.metrics import EMAIL_BACKLOG
from chatserver.notify.planner import Planner, Presence
from chatserver.notify.sender import Sender
from chatserver.notify.transport import Transport, transport_from_settings
from chatserver.ops import instruments
from chatserver.ops.stats import reporting
from chatserver.settings import Settings
from chatserver.store import outbox
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# Concurrent SMTP conversations per notifier on PostgreSQL: each holds one
# pooled connection (the pool has 10) and one row lock while it sends.
# SQLite has a single notifier that sends one email at a time, because its
# claim is a plain read that a second sender could repeat.
POSTGRES_SENDERS = 4
SQLITE_SENDERS = 1
# How often the notifier tidies the uploads: they expire after days, so an
# hour late is nothing, and a sweep reads every blob's first row or file.
TIDY_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class Pass:
    planned: int
    handled: int


class Notifier:
    def __init__(
        self,
        chat: Chat,
        settings: Settings,
        presence: Presence | None = None,
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
    ) -> None:
        """In the server process pass the hub's `presence`: a fresh in-memory
        one (the default without Redis) sees nobody online."""
        self._chat = chat
        self._db = chat.db
        self._settings = settings
        self._tidied_at: datetime | None = None
        self._clock = clock or chat.clock
        presence = presence or presence_from_settings(settings)
        self._planner = Planner(settings, presence)
        self._sender = Sender(
            chat.db,
            settings,
            transport or transport_from_settings(settings),
            self._clock,
            Composer(settings, self._clock),
        )
        self._stopping = asyncio.Event()

    async def plan(self) -> int:
        """Record every email due now; how many were recorded."""
        return await self._planner.plan(self._db, self._clock())

    async def send_due(self) -> int:
        """Send the recorded emails that are due; how many were handled."""
        workers = POSTGRES_SENDERS if self._db.locks_rows else SQLITE_SENDERS
        handled = await self._sender.drain(workers, self._stopping)
        async with self._db.transaction() as conn:
            backlog = await outbox.backlog(conn)
        EMAIL_BACKLOG.set(backlog)
        instruments.set_notifier_backlog(backlog)
        return handled

    async def run_once(self) -> Pass:
        """One pass: record what is due, send what is due."""
        planned = await self.plan()
        return Pass(planned, await self.send_due())

    async def tidy(self) -> uploads.Tidied | None:
        """`uploads.tidy` if the last one was TIDY_EVERY ago or more; what
        it deleted, or None if it was not due."""
        now = self._clock()
        if self._tidied_at is not None and now - self._tidied_at < TIDY_EVERY:
            return None
        self._tidied_at = now
        tidied = await uploads.tidy(self._chat)
        if tidied.expired or tidied.swept:
            log.info(
                "deleted %d uploads never sent and %d files' bytes nothing referred to",
                tidied.expired,
                tidied.swept,
            )
        return tidied

    async def run_forever(self) -> None:
        log.info("notifier started (every %ss)", self._settings.notify_poll_seconds)
        while not self._stopping.is_set():
            # Apart, so that emails that keep failing do not stop the tidying
            # (nor the reverse). An outage: try again next pass.
            try:
                await self.run_once()
            except Exception:
                log.exception("notifier pass failed")
            try:
                await self.tidy()
            except Exception:
                log.exception("tidying uploads failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), timeout=self._settings.notify_poll_seconds
                )
        log.info("notifier stopped")

    def stop(self) -> None:
        """Finish the email being sent, then return from `run_forever`."""
        self._stopping.set()


async def run_standalone(settings: Settings) -> None:
    """`chatserver notifier`: until SIGTERM or SIGINT, which let the email
    in flight finish (a kill -9 is safe too: see docs/notifications.md)."""
    db = Database.from_settings(settings)
    presence = presence_from_settings(settings)
    # The notifier publishes nothing; Chat wants an Events all the same.
    chat = Chat(settings, db, Events(broker_from_url(None)))
    notifier = Notifier(chat, settings, presence)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, notifier.stop)
    try:
        # The ops page shows the backlog from this process's shared snapshot.
        async with reporting(settings, "notifier"):
            await notifier.run_forever()
    finally:
        await presence.stop()
        await db.dispose()
