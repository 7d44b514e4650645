"""What a load step measured: latencies of acks and deliveries, losses,
duplicates and reorderings, and whether the step met the targets.

`Recorder` is filled by every socket as frames arrive; a `Step` is what is
left of it at the end of a sending phase.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

# Targets from the performance issue; a step passes only with all of them.
TARGET_P99_MS = 100.0
# A step whose achieved send rate is below this share of the asked rate means
# the generator or the server could not keep up: it does not pass either.
ACHIEVED_SHARE = 0.95


def now_ns() -> int:
    return time.perf_counter_ns()


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Step:
    """The figures of one sending phase."""

    target_rate: float
    duration: float
    sent: int = 0
    acked: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unacked: int = 0
    deliveries: int = 0
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    disconnects: int = 0
    send_rate: float = 0.0
    delivered_per_s: float = 0.0
    deliver_p50_ms: float = 0.0
    deliver_p99_ms: float = 0.0
    deliver_max_ms: float = 0.0
    ack_p50_ms: float = 0.0
    ack_p99_ms: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            self.lost == 0
            and self.unacked == 0
            and not self.errors
            and self.duplicates == 0
            and self.order_violations == 0
            and self.disconnects == 0
            and self.deliver_p99_ms < TARGET_P99_MS
            and self.send_rate >= ACHIEVED_SHARE * self.target_rate
        )


class Recorder:
    """Bookkeeping shared by every socket: acks by client_id, seqs acked per
    conversation and received per socket, latencies of the current step."""

    def __init__(self) -> None:
        self.sent_at: dict[str, int] = {}
        self.ack_ms: list[float] = []
        self.deliver_ms: list[float] = []
        self.acked: dict[str, set[int]] = defaultdict(set)
        self.errors: Counter[str] = Counter()
        self.duplicates = 0
        self.order_violations = 0
        self.disconnects = 0
        self.deliveries = 0
        self.last_delivery_ns = 0

    def reset(self) -> None:
        self.ack_ms.clear()
        self.deliver_ms.clear()
        self.acked.clear()
        self.errors.clear()
        self.duplicates = self.order_violations = self.deliveries = 0
