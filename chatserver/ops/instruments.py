"""The process's Prometheus metrics, and the same numbers as plain counters.

Every `record_*` call updates both: Prometheus serves `/metrics` (one worker's
view), and `TOTALS` feeds the snapshot each worker shares for the ops page's
cross-worker sums (also on `/metrics`, `stats.deployment_metrics`). Nothing
here does I/O, so the hot paths (fan-out, group commit) pay only an
increment.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from chatserver.roles import Role

# Delivery latency buckets: a healthy worker delivers within milliseconds;
# anything past a second is an outage or a stall worth seeing separately.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Group commit batches run from 1 to settings.send_batch_max (256 by default).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Cycle collector pauses: young collections take well under a millisecond;
# a full one over a worker with thousands of sockets, a large part of a second.
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

CONNECTIONS = Gauge("chat_connections", "Open WebSocket connections", ["role"])
ROOMS = Gauge("chat_rooms", "Rooms with local subscribers (one broker subscription each)")
MESSAGES_SENT = Counter("chat_messages_sent", "Messages stored by this worker's group commit")
FRAMES_DELIVERED = Counter("chat_frames_delivered", "Frames queued to local sockets by fan-out")
DELIVERY_LATENCY = Histogram(
    "chat_delivery_latency_seconds",
    "From a message's commit to its fan-out on this worker",
    buckets=LATENCY_BUCKETS,
)
SEND_BATCH = Histogram("chat_send_batch_size", "Messages per group commit", buckets=BATCH_BUCKETS)
SEND_COMMIT = Histogram(
    "chat_send_commit_seconds", "Time to store one group commit batch", buckets=COMMIT_BUCKETS
)
HANDSHAKES_REFUSED = Counter(
    "chat_handshakes_refused", "WebSocket handshakes refused with 503: the worker was behind"
)
SLOW_DISCONNECTS = Counter(
    "chat_slow_client_disconnects", "Connections closed because their send queue overflowed"
)
RESYNCS = Counter("chat_broker_resyncs", "Rooms that caught up from the database after a Resync")
PUBLISH_FAILURES = Gauge(
    "chat_broker_publish_failures", "Broker publishes that failed since the worker started"
)
SEND_BACKLOG = Gauge("chat_send_queue_backlog", "Sends waiting for the next group commit")
GC_PAUSES = Histogram(
    "chat_gc_pause_seconds",
    "Event loop stopped by the cycle collector, per collection (chatserver/ops/collector.py)",
    ["generation"],
    buckets=GC_PAUSE_BUCKETS,
)
NOTIFIER_BACKLOG = Gauge("chat_notifier_backlog", "Email notifications due but not yet sent")


@dataclass
class Totals:
    """The numbers a worker shares with the ops page, since it started."""

    pid: int = field(default_factory=os.getpid)
    connections: dict[str, int] = field(default_factory=lambda: {role.value: 0 for role in Role})
    messages_sent: int = 0
    frames_delivered: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    # Cumulative counts per bucket bound of LATENCY_BUCKETS, plus +Inf.
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    slow_disconnects: int = 0
    resyncs: int = 0
    notifier_backlog: int | None = None

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


TOTALS = Totals()


def connection_opened(role: str) -> None:
    CONNECTIONS.labels(role).inc()
    TOTALS.connections[role] = TOTALS.connections.get(role, 0) + 1


def connection_closed(role: str) -> None:
    CONNECTIONS.labels(role).dec()
    TOTALS.connections[role] = TOTALS.connections.get(role, 0) - 1


def record_stored(count: int, seconds: float) -> None:
    """The group commit's `on_stored` callback: one call per committed batch."""
    MESSAGES_SENT.inc(count)
    SEND_BATCH.observe(count)
    SEND_COMMIT.observe(seconds)
    TOTALS.messages_sent += count


def record_delivered(frames: int) -> None:
    if frames:
        FRAMES_DELIVERED.inc(frames)
        TOTALS.frames_delivered += frames


def record_latency(seconds: float) -> None:
    seconds = max(seconds, 0.0)
    DELIVERY_LATENCY.observe(seconds)
    TOTALS.latency_count += 1
    TOTALS.latency_sum += seconds
    for index, bound in enumerate(LATENCY_BUCKETS):
        if seconds <= bound:
            TOTALS.latency_buckets[index] += 1
    TOTALS.latency_buckets[-1] += 1


def record_slow_disconnect() -> None:
    SLOW_DISCONNECTS.inc()
    TOTALS.slow_disconnects += 1


def record_resync() -> None:
    RESYNCS.inc()
    TOTALS.resyncs += 1


def record_gc_pause(generation: int, seconds: float) -> None:
    GC_PAUSES.labels(str(generation)).observe(seconds)


def set_notifier_backlog(count: int) -> None:
    """For the notifier: how many emails are due and unsent."""
    NOTIFIER_BACKLOG.set(count)
    TOTALS.notifier_backlog = count
