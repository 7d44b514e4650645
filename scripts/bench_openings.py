"""Micro-benchmark of a subscribe's opening (`Hub._replay`'s read: the
conversation as its viewer may see it and the first history page) under a
crowd, as in a reconnect storm: N concurrent openings on PostgreSQL, half
by staff of one organisation, half by each conversation's candidate;
prints the wall time, the worker's CPU and the transactions begun per
round.

    PYTHONPATH=. .venv/bin/python scripts/bench_openings.py              # Chat.openings
    PYTHONPATH=. .venv/bin/python scripts/bench_openings.py --unbatched  # queries.opening
    PYTHONPATH=. .venv/bin/python scripts/bench_openings.py --calls 500 --rounds 20

`--unbatched` calls `queries.opening`, one transaction per call, which is
what the hub called before `chat/openings.py`. It creates a fresh migrated
database on the loopback server, provisions N conversations with
`--messages` messages each, and drops it at the end.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import Any

from chatserver.broker.memory import MemoryBroker
from chatserver.chat import applications, message_send, queries
from chatserver.chat.events import Events
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role, Status
from chatserver.chat.service import Chat
from chatserver.settings import Settings
from chatserver.store.db import Database
from scripts.load import crowd_rounds
from scripts.load.backends import SECRET

Ask = tuple[Viewer, str]


async def provision(chat: Chat, calls: int, messages: int) -> list[Ask]:
    asks: list[Ask] = []
    applied = datetime(2026, 12, 1, tzinfo=UTC)
    for n in range(calls):
        app = await applications.upsert_application(
            chat,
            f"app-{n}",
            ("acme", "Acme"),
            ("job", "Job"),
            (f"c{n}", f"Cand {n}", f"c{n}@x.test"),
            Status.INTERVIEWING,
            applied,
        )
        conversation = str(app["conversation_id"])
        candidate = Viewer(
            Role.CANDIDATE, f"c{n}", f"Cand {n}", "UTC", application_ids=(f"app-{n}",)
        )
        for m in range(messages):
            await message_send.send_message(
                chat, candidate, conversation, str(uuid.uuid4()), f"Message {m}"
            )
        if n % 2:
            asks.append((Viewer(Role.STAFF, "s", "Staff", "UTC", org_id="acme"), conversation))
        else:
            asks.append((candidate, conversation))
    return asks


async def run(args: argparse.Namespace, url: str) -> None:
    settings = Settings(database_url=url, secret_keys=(SECRET,))
    db = Database.from_settings(settings)
    chat = Chat(settings, db, Events(MemoryBroker()))

    def opening(viewer: Viewer, conversation: str) -> Any:
        if args.unbatched:
            return queries.opening(chat, viewer, conversation, 0)
        return chat.openings.opening(viewer, conversation, 0)

    def wrong(opened: list[Any]) -> str | None:
        if all(len(page) == args.messages for _, page in opened):
            return None
        return f"pages of {sorted({len(p) for _, p in opened})} messages"

    await chat.start()
    try:
        asks = await provision(chat, args.calls, args.messages)
        await crowd_rounds.measure(
            db,
            args,
            f"{'unbatched' if args.unbatched else 'batched'} openings, "
            f"{args.messages} messages each",
            lambda: [opening(v, c) for v, c in asks],
            wrong,
        )
    finally:
        await chat.stop()
        await db.dispose()


def main() -> None:
    args = crowd_rounds.arguments(
        __doc__,
        lambda p: p.add_argument("--messages", type=int, default=4),
        lambda p: p.add_argument("--unbatched", action="store_true"),
    )
    crowd_rounds.on_fresh_database("bench_openings", lambda url: run(args, url))


if __name__ == "__main__":
    main()
