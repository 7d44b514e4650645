"""Micro-benchmark of the session check (`web/deps.py::signed_in`) under a
crowd, as in a reconnect storm: N concurrent calls, each with a valid
session cookie, on PostgreSQL; prints the wall time, the worker's CPU and
the transactions begun per round.

    PYTHONPATH=. .venv/bin/python scripts/bench_session_check.py
    PYTHONPATH=. .venv/bin/python scripts/bench_session_check.py --calls 500 --rounds 20

Run it with another checkout first on PYTHONPATH to compare versions (the
script uses only what both have: `signed_in`, the store's upserts and the
signer). It creates a fresh migrated database on the loopback server,
provisions half staff and half candidates, and drops it at the end.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

from starlette.requests import HTTPConnection

from chatserver.broker.memory import MemoryBroker
from chatserver.chat.events import Events
from chatserver.chat.service import Chat
from chatserver.chat.signing import Session, Signer
from chatserver.roles import Role
from chatserver.settings import Settings
from chatserver.store import people
from chatserver.store.db import Database
from chatserver.web.auth import SESSION_COOKIE
from chatserver.web.deps import Services, signed_in
from scripts.load import crowd_rounds
from scripts.load.backends import SECRET


async def provision(chat: Chat, calls: int) -> list[Session]:
    sessions = []
    async with chat.db.transaction() as conn:
        await people.upsert_org(conn, "acme", "Acme")
        for n in range(calls):
            if n % 2:
                await people.upsert_staff(conn, f"s{n}", "acme", f"Staff {n}", f"s{n}@x.test")
                sessions.append(Session(Role.STAFF, f"s{n}", "csrf"))
            else:
                await people.upsert_candidate(conn, f"c{n}", f"Cand {n}", f"c{n}@x.test")
                sessions.append(Session(Role.CANDIDATE, f"c{n}", "csrf", (f"app-{n}",)))
    return sessions


def connection(app: Any, cookie: str) -> HTTPConnection:
    header = f"{SESSION_COOKIE}={cookie}".encode()
    return HTTPConnection({"type": "http", "app": app, "headers": [(b"cookie", header)]})


async def run(args: argparse.Namespace, url: str) -> None:
    settings = Settings(database_url=url, secret_keys=(SECRET,))
    db = Database.from_settings(settings)
    chat = Chat(settings, db, Events(MemoryBroker()))
    signer = Signer(settings)
    # `signed_in` needs the settings, the domain and the signer only.
    services = Services(settings, chat, signer, broker=None, hub=None)  # type: ignore[arg-type]
    app = SimpleNamespace(state=SimpleNamespace(services=services))
    try:
        cookies = [signer.session_cookie(s) for s in await provision(chat, args.calls)]
        await crowd_rounds.measure(
            db,
            args,
            "signed_in",
            lambda: [signed_in(connection(app, c)) for c in cookies],
            lambda found: "a valid session was refused" if None in found else None,
        )
    finally:
        await db.dispose()


def main() -> None:
    args = crowd_rounds.arguments(__doc__)
    crowd_rounds.on_fresh_database("bench_session", lambda url: run(args, url))


if __name__ == "__main__":
    main()
