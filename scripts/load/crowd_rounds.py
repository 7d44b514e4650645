"""Rounds of many concurrent calls on a fresh PostgreSQL database: the
measuring loop of the crowd micro-benchmarks (scripts/bench_session_check.py,
scripts/bench_openings.py). Each round's wall time, the process's CPU and
the transactions the engine began; the first round only warms the pool."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import uvloop
from sqlalchemy import event

from chatserver.store.db import Database
from scripts.load.backends import PgDatabase

T = TypeVar("T")


def arguments(doc: str, *extra: Callable[[argparse.ArgumentParser], object]) -> argparse.Namespace:
    """`--calls` and `--rounds`, and what each `extra` adds."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    for add in extra:
        add(parser)
    return parser.parse_args()


def on_fresh_database(name: str, run: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """Run `run(url)` on uvloop against a new database, dropped afterwards."""
    database = PgDatabase(f"{name}_{uuid.uuid4().hex[:8]}").create()
    try:
        uvloop.run(run(database.url))
    finally:
        database.drop()


async def measure(
    db: Database,
    args: argparse.Namespace,
    what: str,
    calls: Callable[[], Sequence[Awaitable[T]]],
    check: Callable[[list[T]], str | None],
) -> None:
    """Print the medians of `args.rounds` rounds of `calls()` run at once;
    exit if `check` finds a round's answers wrong (its message)."""
    transactions = 0

    def on_begin(_conn: Any) -> None:
        nonlocal transactions
        transactions += 1

    event.listen(db.engine.sync_engine, "begin", on_begin)
    walls, cpus, counts = [], [], []
    for round_ in range(args.rounds + 1):
        pending = calls()
        transactions = 0
        cpu, wall = time.process_time(), time.perf_counter()
        answers = list(await asyncio.gather(*pending))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        wrong = check(answers)
        if wrong:
            raise SystemExit(f"FAILED: {wrong}")
        if round_:
            walls.append(wall)
            cpus.append(cpu)
            counts.append(transactions)
    cpu_median = statistics.median(cpus)
    print(
        f"{args.calls} concurrent {what}, {args.rounds} rounds (median): "
        f"wall {statistics.median(walls) * 1000:.1f} ms, "
        f"CPU {cpu_median * 1000:.1f} ms ({cpu_median / args.calls * 1e6:.0f} µs per call), "
        f"transactions {statistics.median(counts):.0f}"
    )
