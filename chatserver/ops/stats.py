"""Cross-worker numbers for the ops page.

Each process's `/metrics` shows only itself, so every worker (and a separate
notifier process, if it runs a reporter) writes a small snapshot of its
totals every few seconds: into a Redis hash (`<prefix>ops:workers`, one field
per process) when Redis is configured, else into memory. The ops page sums
the fresh ones; a process that stopped reporting drops out by age.

Totals since a process started say little about now, and the page's own
2-second polls see no message most of the time, so each process also keeps
its totals of the last WINDOW_SECONDS (`Window`) and reports how much they
grew over it (`recent`): the page's rates per minute and latency
percentiles come from those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from chatserver.broker.clients import KEY_ERRORS, key_client
from chatserver.ops import instruments
from chatserver.settings import Settings

log = logging.getLogger(__name__)

# The ops page polls every 2 s; a snapshot as often keeps it live for the
# price of one small Redis write per worker per period.
REPORT_SECONDS = 2.0
# A snapshot older than a few periods belongs to a process that is gone.
STALE_SECONDS = 5 * REPORT_SECONDS

# The ops page's rates and latencies are over the last 5 minutes: long
# enough that ordinary chat traffic (a few messages a minute) shows.
WINDOW_SECONDS = 300.0
# The counters the window differences (latency_buckets as well, per bucket).
WINDOWED = ("messages_sent", "frames_delivered", "latency_count", "latency_sum")

Snapshot = dict[str, Any]


class Window:
    """This process's counters as they were over the last WINDOW_SECONDS:
    a sample every report, the oldest kept one at or just past the window's
    start, so `recent` is what happened within it (or since the process
    started, if that is sooner)."""

    def __init__(self, seconds: float = WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, Snapshot]] = deque()

    def recent(self, now: float, totals: Snapshot) -> Snapshot:
        if not self._samples or now - self._samples[-1][0] >= REPORT_SECONDS / 2:
            self._samples.append((now, totals))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.seconds:
            self._samples.popleft()
        at, base = self._samples[0]
        span = max(now - at, 0.0)
        recent: Snapshot = {"seconds": span}
        for name in WINDOWED:
            recent[name] = totals[name] - base[name]
        now_buckets, base_buckets = totals["latency_buckets"], base["latency_buckets"]
        recent["latency_buckets"] = [
            count - before for count, before in zip(now_buckets, base_buckets, strict=True)
        ]
        minutes = span / 60
        recent["messages_per_minute"] = recent["messages_sent"] / minutes if span else None
        recent["frames_per_minute"] = recent["frames_delivered"] / minutes if span else None
        return recent


class StatsStore(Protocol):
    async def put(self, worker: str, snapshot: Snapshot) -> None: ...

    async def all(self) -> list[Snapshot]: ...

    async def close(self) -> None: ...


class MemoryStats:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}

    async def put(self, worker: str, snapshot: Snapshot) -> None:
        self._snapshots[worker] = snapshot

    async def all(self) -> list[Snapshot]:
        return _fresh(self._snapshots.values())

    async def close(self) -> None:
        self._snapshots.clear()


class RedisStats:
    def __init__(self, url: str, prefix: str) -> None:
        self._redis = key_client(url, timeout=5)
        self._key = f"{prefix}ops:workers"

    async def put(self, worker: str, snapshot: Snapshot) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._key, worker, orjson.dumps(snapshot))
            # The hash goes away by itself once no process reports any more.
            pipe.expire(self._key, int(STALE_SECONDS))
            await pipe.execute()

    async def all(self) -> list[Snapshot]:
        raw = await self._redis.hgetall(self._key)
        snapshots = {worker: orjson.loads(value) for worker, value in raw.items()}
        fresh = _fresh(snapshots.values())
        stale = [worker for worker, snapshot in snapshots.items() if snapshot not in fresh]
        if stale:
            await self._redis.hdel(self._key, *stale)
        return fresh

    async def close(self) -> None:
        await self._redis.aclose()


def _fresh(snapshots: Any) -> list[Snapshot]:
    now = time.time()
    return [s for s in snapshots if now - float(s.get("at", 0)) < STALE_SECONDS]


def stats_store_from_settings(settings: Settings) -> StatsStore:
    if settings.redis_url:
        return RedisStats(settings.redis_url, settings.redis_prefix)
    return MemoryStats()


@contextlib.asynccontextmanager
async def reporting(settings: Settings, role: str) -> AsyncIterator[StatsReporter]:
    """A process other than a web worker (the notifier, mail-in) on the ops
    page while the block runs: its snapshot written every REPORT_SECONDS."""
    reporter = StatsReporter(stats_store_from_settings(settings), role=role)
    reporter.start()
    try:
        yield reporter
    finally:
        await reporter.stop()
        await reporter.store.close()


class StatsReporter:
    """Writes this process's snapshot every REPORT_SECONDS."""

    def __init__(self, store: StatsStore, role: str = "web") -> None:
        self.store = store
        self.role = role
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.window = Window()
        self._task: asyncio.Task[None] | None = None
        # Stopping by event, not by cancelling: redis-py's own timeouts can
        # swallow a cancellation on Python 3.11, which hung shutdown.
        self._stopped = asyncio.Event()

    def snapshot(self) -> Snapshot:
        now = time.time()
        totals = instruments.TOTALS.snapshot()
        return {
            **totals,
            "recent": self.window.recent(now, totals),
            "pid": os.getpid(),
            "worker": self.worker,
            "role": self.role,
            "at": now,
        }

    async def report(self) -> bool:
        """Write the snapshot now; False if the store is unreachable."""
        try:
            await self.store.put(self.worker, self.snapshot())
        except KEY_ERRORS as exc:
            log.warning("ops snapshot not written: %s", exc)
            return False
        return True

    async def gather(self) -> list[Snapshot]:
        """Every live process's snapshot, or just this one's if the store is down."""
        try:
            return await self.gather_all()
        except KEY_ERRORS:
            return [self.snapshot()]

    async def gather_all(self) -> list[Snapshot]:
        """Every live process's snapshot, this one's as of now; KEY_ERRORS
        while the store does not answer (where `gather` falls back)."""
        await self.report()
        return await self.store.all()

    def start(self) -> None:
        if self._task is None:
            self._stopped.clear()
            self._task = asyncio.create_task(self._report_forever(), name="ops-stats")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopped.set()
            await task

    async def _report_forever(self) -> None:
        while not self._stopped.is_set():
            await self.report()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), REPORT_SECONDS)


def summed(snapshots: Iterable[Snapshot]) -> dict[str, Any]:
    """The deployment's totals: every worker's numbers added up."""
    totals: dict[str, Any] = {
        "connections": {},
        "messages_sent": 0,
        "frames_delivered": 0,
        "latency_count": 0,
        "latency_sum": 0.0,
        "latency_buckets": [0] * (len(instruments.LATENCY_BUCKETS) + 1),
        "slow_disconnects": 0,
        "resyncs": 0,
        "notifier_backlog": None,
        # What the processes' windows saw: rates are each process's own rate
        # added up (a process that just started has a shorter window).
        "recent": {
            "seconds": 0.0,
            "window_seconds": WINDOW_SECONDS,
            "messages_sent": 0,
            "frames_delivered": 0,
            "messages_per_minute": None,
            "frames_per_minute": None,
            "latency_count": 0,
            "latency_sum": 0.0,
            "latency_buckets": [0] * (len(instruments.LATENCY_BUCKETS) + 1),
        },
    }
    for snapshot in snapshots:
        _add_recent(totals["recent"], snapshot.get("recent"))
        for role, count in snapshot.get("connections", {}).items():
            totals["connections"][role] = totals["connections"].get(role, 0) + count
        for name in (
            "messages_sent",
            "frames_delivered",
            "latency_count",
            "latency_sum",
            "slow_disconnects",
            "resyncs",
        ):
            totals[name] += snapshot.get(name, 0)
        for index, count in enumerate(snapshot.get("latency_buckets", [])):
            if index < len(totals["latency_buckets"]):
                totals["latency_buckets"][index] += count
        if snapshot.get("notifier_backlog") is not None:
            totals["notifier_backlog"] = (totals["notifier_backlog"] or 0) + snapshot[
                "notifier_backlog"
            ]
    return totals


def _add_recent(into: dict[str, Any], recent: Snapshot | None) -> None:
    if not recent:
        return
    into["seconds"] = max(into["seconds"], float(recent.get("seconds", 0.0)))
    for name in WINDOWED:
        into[name] += recent.get(name, 0)
    for name in ("messages_per_minute", "frames_per_minute"):
        if recent.get(name) is not None:
            into[name] = (into[name] or 0.0) + recent[name]
    for index, count in enumerate(recent.get("latency_buckets", [])):
        if index < len(into["latency_buckets"]):
            into["latency_buckets"][index] += count


def deployment_metrics(snapshots: Iterable[Snapshot]) -> bytes:
    """Prometheus text of the deployment as the ops page sums it: every
    live process's snapshot. `/metrics` is otherwise the answering worker's
    own view, and behind one port each scrape reaches one worker of several
    (its numbers jumping from scrape to scrape); these lines are the same
    whichever answers, and carry a separate notifier's backlog, which
    serves no HTTP of its own. A registry made for each scrape, so a
    process that stopped reporting leaves no series behind."""
    snapshots = list(snapshots)
    totals = summed(snapshots)
    registry = CollectorRegistry()
    processes = Gauge(
        "chat_deployment_processes",
        "Processes reporting to the ops page (web workers, notifiers)",
        ["role"],
        registry=registry,
    )
    for role in sorted({str(s.get("role", "web")) for s in snapshots}):
        processes.labels(role).set(sum(1 for s in snapshots if s.get("role", "web") == role))
    connections = Gauge(
        "chat_deployment_connections",
        "Open WebSocket connections on every web worker",
        ["role"],
        registry=registry,
    )
    for role, count in sorted(totals["connections"].items()):
        connections.labels(role).set(count)
    if totals["notifier_backlog"] is not None:
        Gauge(
            "chat_deployment_notifier_backlog",
            "Email notifications due but not yet sent, as the notifiers last saw",
            registry=registry,
        ).set(totals["notifier_backlog"])
    recent = totals["recent"]
    for name, what in (("messages", "Messages stored"), ("frames", "Frames delivered")):
        rate = recent[f"{name}_per_minute"]
        if rate is not None:
            Gauge(
                f"chat_deployment_{name}_per_minute",
                f"{what} per minute by every worker, over their last five minutes",
                registry=registry,
            ).set(rate)
    return generate_latest(registry)
