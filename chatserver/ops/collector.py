"""The web worker's cycle collector: tuned once at start-up, its pauses
measured (docs/performance.md, "Pauses of the cycle collector").

CPython frees most objects by reference counting; the cycle collector
stops the event loop to walk containers, and a full collection walks
every one the worker holds. A worker with 2,500 subscribed sockets holds
some 450,000, and with Python's default young threshold (700) a stream of
1,000 sends/s promoted enough in-flight objects to start a full
collection every few seconds, 0.2 to 0.6 s each, during which no frame is
delivered. So a worker

- freezes what start-up built (modules, tables, pools: gc.freeze), which
  no collection needs to walk again;
- collects the young generation only after `young_threshold` net new
  containers (CHAT_GC_YOUNG_THRESHOLD), so objects that live for one
  send are freed by their reference count before a collection can
  promote them, and full collections become rare;
- observes every pause in `chat_gc_pause_seconds` by generation, so an
  operator sees them next to the delivery latency they cause.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from chatserver.ops import instruments

# Collections of the young generation per collection of the middle one
# (Python's default is 10): measured with the young threshold above.
MIDDLE_THRESHOLD = 20


class _Stopwatch:
    """A `gc.callbacks` entry timing each collection."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            instruments.record_gc_pause(info["generation"], time.perf_counter() - self._started)


_STOPWATCH = _Stopwatch()


def watch() -> None:
    """Measure every collection's pause (once per process)."""
    if _STOPWATCH not in gc.callbacks:
        gc.callbacks.append(_STOPWATCH)


def tune(young_threshold: int) -> None:
    """Freeze what start-up built and set the thresholds; for a serving
    worker process only (a frozen object is never collected, so tests that
    build many apps in one process do not call this)."""
    watch()
    gc.collect()
    gc.freeze()
    _, _, old = gc.get_threshold()
    gc.set_threshold(young_threshold, MIDDLE_THRESHOLD, old)
