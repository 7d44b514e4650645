"""Micro-benchmark of the domain send path (no sockets): sends/s and CPU per send.

    python scripts/bench_send.py --concurrency 1000 --sends 20000
    python scripts/bench_send.py --org-staff 1,50,500 --sender candidate   # issue 10


It creates a fresh PostgreSQL database on the loopback server, migrates it,
provisions one organisation, staff member and interviewing candidate per
conversation, and runs `concurrency` senders (a staff member and a candidate
per conversation, taking turns) that call `message_send.send_message` in a loop
until `sends` messages are acknowledged or `--timeout` passes. With
`--queue-only` they submit ready-made requests to the send queue instead,
leaving out validation, rate limiting and Markdown rendering. Events go to
the in-process broker, so the figure is the group commit and nothing else.
It then checks that every conversation's seqs are gapless and unique, prints
the figures and drops the database.

`--org-staff 1,50,500` puts every conversation in ONE organisation with that
many staff members instead (a real customer's shared inbox), once per
figure on a fresh database, and prints the cost per send for each, with the
events published and the rows written per send: issue 10 wants them flat.
`--sender candidate` lets only candidates send (the messages every staff
member's bell hears of); `--sqlite` measures the embedded default instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
import uvloop

from chatserver.broker.memory import MemoryBroker
from chatserver.chat import applications, message_send, queries, staff_users
from chatserver.chat.events import Events
from chatserver.chat.formatting import render
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Status
from chatserver.chat.send_request import SendRequest
from chatserver.chat.sending import SendQueue
from chatserver.chat.service import Chat
from chatserver.settings import Settings
from chatserver.store.db import Database
from chatserver.store.migrate import upgrade

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-0123456789abcdef"
# Provisioning requests in flight at once.
SETUP_CONCURRENCY = 32
# Messages of this length, with a little Markdown, like a short chat line.
BODY = "Thanks, **see you** at the interview on Tuesday"
HTML = render(BODY)


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on the machine (the server is local)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)
        except OSError:
            continue
        if fields[0].endswith("(postgres"):
            values = fields[1].split()
            ticks += int(values[11]) + int(values[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def admin_execute(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.encode())


class CountingBroker(MemoryBroker):
    """The in-process broker, counting what is published."""

    published = 0

    async def publish_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.published += len(items)
        await super().publish_many(items)


async def provision(
    chat: Chat, conversations: int, org_staff: int | None = None
) -> list[tuple[Viewer, str]]:
    """(viewer, conversation) for a staff member and a candidate per
    conversation: each in its own organisation, or with `org_staff` all in
    one organisation of that many staff members."""
    applied = datetime(2026, 1, 5, tzinfo=UTC)
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
    if org_staff is not None:
        for k in range(org_staff):
            org = ("org-0", "Org 0")
            await staff_users.upsert_staff(
                chat, f"staff-{k}", org, f"Staff {k}", f"s{k}@x.test", "UTC"
            )

    async def one(n: int) -> list[tuple[Viewer, str]]:
        async with gate:
            org = (f"org-{n}", f"Org {n}")
            staff_id = f"staff-{n}"
            if org_staff is not None:
                org, staff_id = ("org-0", "Org 0"), f"staff-{n % org_staff}"
            else:
                await staff_users.upsert_staff(
                    chat, staff_id, org, f"Staff {n}", f"s{n}@x.test", "UTC"
                )
            created = await applications.upsert_application(
                chat,
                f"app-{n}",
                org,
                (f"job-{n}", "Teacher of Mathematics"),
                (f"cand-{n}", f"Candidate {n}", f"c{n}@x.test"),
                Status.INTERVIEWING,
                applied,
            )
            staff = await queries.viewer_for(chat, "staff", staff_id)
            candidate = await queries.viewer_for(chat, "candidate", f"cand-{n}", (f"app-{n}",))
            assert staff is not None
            assert candidate is not None
            conversation = str(created["conversation_id"])
            return [(staff, conversation), (candidate, conversation)]

    pairs = await asyncio.gather(*(one(n) for n in range(conversations)))
    return [pair for both in pairs for pair in both]


async def check_gapless(db: Database, expected: int) -> None:
    async with db.transaction() as conn:
        bad = (
            await conn.exec_driver_sql(
                "SELECT count(*) FROM conversations c WHERE c.last_seq <> "
                "(SELECT count(DISTINCT m.seq) FROM messages m WHERE m.conversation_id = c.id) "
                "OR c.last_seq <> coalesce((SELECT max(m.seq) FROM messages m "
                "WHERE m.conversation_id = c.id), 0)"
            )
        ).scalar_one()
        stored = (await conn.exec_driver_sql("SELECT count(*) FROM messages")).scalar_one()
    if bad or stored != expected:
        raise SystemExit(f"FAILED: {bad} conversations with gaps, {stored} stored of {expected}")


async def count(db: Database, table: str) -> int:
    async with db.transaction() as conn:
        return int((await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar_one())


async def run(args: argparse.Namespace, url: str, org_staff: int | None) -> None:
    settings = Settings(database_url=url, secret_keys=(SECRET,), send_rate=1e9, send_burst=10**9)
    db = Database.from_settings(settings)
    broker = CountingBroker()
    chat = Chat(settings, db, Events(broker))
    if args.writers:
        chat.sends = SendQueue(
            db,
            chat.events,
            chat.limits,
            chat.clock,
            max_batch=settings.send_batch_max,
            writers=args.writers,
        )
    await chat.start()
    try:
        senders = await provision(chat, args.conversations, org_staff)
        if args.sender == "candidate":
            # A candidate may write once staff have: one staff message each.
            for who, conversation in senders[0::2]:
                await message_send.send_message(chat, who, conversation, str(uuid.uuid4()), BODY)
            senders = senders[1::2]
        elif args.sender == "staff":
            senders = senders[0::2]
        warmup = await count(db, "messages")
        rows_before = {t: await count(db, t) for t in ("messages", "notifications")}
        published_before = broker.published
        latencies: list[float] = []
        remaining = args.sends
        deadline = time.monotonic() + args.timeout

        async def sender(who: Viewer, conversation: str) -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                started = time.perf_counter()
                if args.queue_only:
                    request = SendRequest(who, conversation, str(uuid.uuid4()), BODY, HTML)
                    await chat.sends.submit(request)
                else:
                    await message_send.send_message(
                        chat, who, conversation, str(uuid.uuid4()), BODY
                    )
                latencies.append(time.perf_counter() - started)

        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        pg_before = postgres_cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(sender(*senders[i % len(senders)]) for i in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        pg_cpu = postgres_cpu_seconds() - pg_before
        published = broker.published - published_before
        rows = {t: await count(db, t) - n for t, n in rows_before.items()}
        await check_gapless(db, len(latencies) + warmup)
    finally:
        await chat.stop()
        await db.dispose()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    latencies.sort()
    sent = len(latencies)
    where = "own orgs" if org_staff is None else f"one org, {org_staff} staff"
    # Other PostgreSQL work on the machine would count under SQLite too.
    postgres = "" if args.sqlite else f"pg_cpu_us/send={pg_cpu / sent * 1e6:.0f}"
    print(
        f"{where:>22}: sends={sent} sender={args.sender} concurrency={args.concurrency} "
        f"conversations={args.conversations} sends/s={sent / elapsed:.0f} "
        f"cpu_us/send={cpu / sent * 1e6:.0f} {postgres} "
        f"p50_ms={latencies[sent // 2] * 1e3:.1f} p99_ms={latencies[int(sent * 0.99)] * 1e3:.1f} "
        f"events/send={published / sent:.2f} rows/send={sum(rows.values()) / sent:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--sends", type=int, default=20000)
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--writers", type=int, default=0, help="override the writer count")
    parser.add_argument(
        "--queue-only", action="store_true", help="submit to the send queue directly"
    )
    parser.add_argument(
        "--org-staff",
        default="",
        help="comma list: one organisation with this many staff, one run each (e.g. 1,50,500)",
    )
    parser.add_argument("--sender", choices=("both", "staff", "candidate"), default="both")
    parser.add_argument("--sqlite", action="store_true", help="the embedded default instead")
    parser.add_argument("--timeout", type=float, default=120.0, help="stop sending after this")
    args = parser.parse_args()
    sizes: list[int | None] = [int(n) for n in args.org_staff.split(",") if n] or [None]
    for org_staff in sizes:
        if args.sqlite:
            with tempfile.TemporaryDirectory() as folder:
                url = f"sqlite+aiosqlite:///{folder}/bench.db"
                upgrade(Settings(database_url=url, secret_keys=(SECRET,)))
                uvloop.run(run(args, url, org_staff))
            continue
        name = f"chat_bench_{uuid.uuid4().hex[:10]}"
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        admin_execute(f'CREATE DATABASE "{name}"')
        try:
            upgrade(Settings(database_url=url, secret_keys=(SECRET,)))
            uvloop.run(run(args, url, org_staff))
        finally:
            admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
