"""Benchmark of the inbox listing and its search for one big organisation.

    python scripts/bench_inbox.py --conversations 3000 --messages 10

It creates a fresh database (PostgreSQL on the loopback server, or with
`--sqlite` a file in a temporary folder), migrates it, and writes one
organisation with `--conversations` applications, each with about
`--messages` messages (candidates and staff taking turns, one in five with
an accented word), three staff members who have read some conversations and
deleted a few messages for themselves, and `--others` organisations as large
around it, whose rows the queries must skip. Then it times, `--repeat` times each, the
domain's listing (`inbox.list_conversations`: one page of 50 with unread
counts and last messages) for each filter and sort and for searches that
hit a name, a message word (accented or not) and nothing, plus one round of
the inbox feed's query (`inbox.inbox_updates` for ten conversations and
the three staff), and prints the median and the 90th percentile.

On PostgreSQL it also measures the alternative design that search folding
did not take: `unaccent(lower(body)) LIKE` at query time (the `unaccent`
extension, created in the benchmark's own database) against the stored
folded column, over the same organisation's messages, and prints the ratio.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from chatserver.broker.memory import MemoryBroker
from chatserver.chat import inbox
from chatserver.chat.events import Events
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.chat.service import Chat
from chatserver.settings import Settings
from chatserver.store.db import Database
from chatserver.store.folding import fold
from chatserver.store.migrate import upgrade
from chatserver.store.tables import (
    applications,
    candidates,
    conversations,
    hidden_messages,
    jobs,
    messages,
    organisations,
    read_positions,
    staff,
)

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-0123456789abcdef"
FIRST_NAMES = ("Chloé", "Zoë", "José", "Renée", "François", "Björn", "Tom", "Ana", "Sam", "Lee")
LAST_NAMES = ("Dubois", "Müller", "Núñez", "O'Brien", "Lefèvre", "Smith", "Pérez", "Ng")
TITLES = ("Teacher of Mathematics", "Professeur de Français", "Head of Science", "Técnico")
LINES = (
    "Thanks, see you at the interview on Tuesday",
    "Could you send your **portfolio**?",
    "I have attached my references",
    "Is parking available on site?",
    "Le café est au premier étage",  # one in five is accented
)
ROWS_PER_INSERT = 5000


def admin_execute(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.encode())


async def populate(db: Database, org: str, conversations_count: int, per: int, seed: int) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    async with db.transaction() as conn:
        await conn.execute(organisations.insert().values(id=org, name=org.title()))
        await conn.execute(
            staff.insert(),
            [
                {"id": f"{org}-s{n}", "org_id": org, "name": f"Staff {n}", "email": "s@x.example"}
                for n in range(3)
            ],
        )
        job_rows = [
            {"id": f"{org}-j{n}", "org_id": org, "title": t, "search_title": fold(t)}
            for n, t in enumerate(TITLES)
        ]
        await conn.execute(jobs.insert(), job_rows)
        people, apps, convs, msgs, reads, hides = [], [], [], [], [], []
        for n in range(conversations_count):
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} {n}"
            people.append(
                {"id": f"{org}-c{n}", "name": name, "search_name": fold(name), "email": "c@x.ex"}
            )
            apps.append(
                {
                    "id": f"{org}-a{n}",
                    "org_id": org,
                    "job_id": f"{org}-j{n % len(TITLES)}",
                    "candidate_id": f"{org}-c{n}",
                    "status": "interviewing",
                    "applied_at": start + timedelta(minutes=n),
                }
            )
            count = rng.randint(0, 2 * per)
            last = start + timedelta(minutes=n, seconds=count)
            convs.append(
                {
                    "id": f"{org}-v{n}",
                    "application_id": f"{org}-a{n}",
                    "org_id": org,
                    "state": "open",
                    "last_seq": count,
                    "last_message_at": last if count else None,
                    "has_staff_message": count > 1,
                    "created_at": start,
                }
            )
            for seq in range(1, count + 1):
                body = rng.choice(LINES)
                kind = "candidate" if seq % 2 else "staff"
                msgs.append(
                    {
                        "id": uuid.uuid4().hex,
                        "conversation_id": f"{org}-v{n}",
                        "seq": seq,
                        "sender_kind": kind,
                        "sender_id": f"{org}-c{n}" if kind == "candidate" else f"{org}-s0",
                        "sender_name": name,
                        "client_id": str(uuid.uuid4()),
                        "body": body,
                        "html": body,
                        "search_body": fold(body),
                        "created_at": start + timedelta(minutes=n, seconds=seq),
                        "deleted": False,
                    }
                )
                if rng.random() < 0.01:
                    hides.append(
                        {
                            "message_id": msgs[-1]["id"],
                            "viewer_kind": "staff",
                            "viewer_id": f"{org}-s1",
                        }
                    )
            for reader in range(3):
                if count and rng.random() < 0.5:
                    reads.append(
                        {
                            "conversation_id": f"{org}-v{n}",
                            "reader_kind": "staff",
                            "reader_id": f"{org}-s{reader}",
                            "seq": rng.randint(1, count),
                            "updated_at": start,
                        }
                    )
        for table, rows in (
            (candidates, people),
            (applications, apps),
            (conversations, convs),
            (messages, msgs),
            (read_positions, reads),
            (hidden_messages, hides),
        ):
            for i in range(0, len(rows), ROWS_PER_INSERT):
                await conn.execute(table.insert(), rows[i : i + ROWS_PER_INSERT])


async def timed(run: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """Median and 90th percentile in milliseconds (after one warm-up run)."""
    await run()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


async def bench(settings: Settings, args: argparse.Namespace) -> None:
    upgrade(settings)
    db = Database.from_settings(settings)
    chat = Chat(settings, db, Events(MemoryBroker()))
    try:
        began = time.perf_counter()
        await populate(db, "big", args.conversations, args.messages, 1)
        for n in range(args.others):
            await populate(db, f"other{n}", args.conversations, args.messages, 2 + n)
        async with db.transaction() as conn:
            if db.is_sqlite:
                await conn.exec_driver_sql("ANALYZE")
            total = (await conn.execute(sa.select(sa.func.count()).select_from(messages))).scalar()
        if not db.is_sqlite:
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql(
                    "VACUUM ANALYZE"
                )
        print(
            f"{db.engine.dialect.name}: {1 + args.others} organisations x "
            f"{args.conversations} conversations, {total} messages in all, "
            f"written in {time.perf_counter() - began:.1f} s"
        )
        viewer = Viewer(Role.STAFF, "big-s1", "Staff 1", "UTC", org_id="big")
        cases: list[tuple[str, dict[str, Any]]] = [
            ("all, newest", {}),
            ("all, unread first", {"sort": "unread"}),
            ("all, oldest", {"sort": "oldest"}),
            ("unread, newest", {"filter": "unread"}),
            ("messaged, newest", {"filter": "messaged"}),
            ("archived", {"filter": "archived"}),
            ("search a name 'chloe'", {"q": "chloe"}),
            ("search a word 'portfolio'", {"q": "portfolio"}),
            ("search accented 'CAFE'", {"q": "CAFE"}),
            ("search, no hit 'zzzz'", {"q": "zzzz"}),
            ("search 'cafe', unread first", {"q": "cafe", "sort": "unread"}),
        ]
        print(f"{'listing (page of 50, staff member)':42} {'median ms':>10} {'p90 ms':>8}")
        for label, params in cases:

            async def listing(params: dict[str, Any] = params) -> Any:
                return await inbox.list_conversations(chat, viewer, **params)

            median, p90 = await timed(listing, args.repeat)
            print(f"{label:42} {median:10.1f} {p90:8.1f}")
        ids = [f"big-v{n}" for n in range(0, args.conversations, args.conversations // 10)][:10]

        async def feed() -> Any:
            return await inbox.inbox_updates(chat, ids, ["big-s0", "big-s1", "big-s2"])

        median, p90 = await timed(feed, args.repeat)
        print(f"{'inbox feed round (10 conv. x 3 staff)':42} {median:10.1f} {p90:8.1f}")
        if not db.is_sqlite:
            await compare_unaccent(db, args.repeat)
    finally:
        await db.dispose()


async def compare_unaccent(db: Database, repeat: int) -> None:
    """The organisation's conversations with a matching message, in the
    listing's shape (one index range per conversation), matched by the
    stored folded column and by unaccent(lower(body)) computed per row (the
    design not taken). A word that matches nothing reads every message of
    the organisation."""
    async with db.transaction() as conn:
        await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
    shape = (
        "SELECT count(*) FROM conversations c WHERE c.org_id = 'big' AND "
        "(SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND {} LIMIT 1) IS NOT NULL"
    )
    variants = (
        ("stored folded column", sa.text(shape.format("m.search_body LIKE :p"))),
        ("unaccent(lower(body))", sa.text(shape.format("unaccent(lower(m.body)) LIKE :p"))),
    )
    print(f"{'conversations with a matching message':42} {'median ms':>10} {'p90 ms':>8}")
    for pattern in ("%cafe%", "%zzzz%"):
        results = {}
        for label, query in variants:

            async def count(query: sa.TextClause = query, pattern: str = pattern) -> Any:
                async with db.transaction() as conn:
                    return (await conn.execute(query, {"p": pattern})).scalar()

            median, p90 = await timed(count, repeat)
            results[label] = median
            print(f"{label + ' ' + pattern:42} {median:10.1f} {p90:8.1f}")
        ratio = results["unaccent(lower(body))"] / results["stored folded column"]
        print(
            f"unaccent at query time / folded column, {pattern}: {ratio:.1f}x (same run, medians)"
        )
    ascii_line, accented = LINES[0], LINES[-1]
    for label, text in (("ASCII", ascii_line), ("accented", accented)):
        n = 100_000
        started = time.perf_counter()
        for _ in range(n):
            fold(text)
        per = (time.perf_counter() - started) / n * 1e6
        print(f"fold() of a {len(text)}-character {label} line on the send path: {per:.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--messages", type=int, default=10, help="average per conversation")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--others", type=int, default=9, help="other organisations as large (the tenants around)"
    )
    parser.add_argument("--sqlite", action="store_true", help="the embedded default instead")
    args = parser.parse_args()
    if args.sqlite:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(bench(Settings(data_dir=Path(folder), secret_keys=(SECRET,)), args))
        return
    name = f"chat_bench_inbox_{uuid.uuid4().hex[:8]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        asyncio.run(bench(Settings(database_url=url, secret_keys=(SECRET,)), args))
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
