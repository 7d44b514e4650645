"""The web worker's cycle collector (chatserver/ops/collector.py): frozen
start-up, the young threshold of CHAT_GC_YOUNG_THRESHOLD, every pause
measured. Run in a fresh interpreter: freezing is for the process's
lifetime, and the test process builds many apps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.e2e.servers import REPO

SCRIPT = textwrap.dedent(
    """
    import gc
    from prometheus_client import REGISTRY
    from chatserver.ops import collector

    def pauses(generation):
        labels = {"generation": str(generation)}
        return REGISTRY.get_sample_value("chat_gc_pause_seconds_count", labels) or 0

    before = gc.get_threshold()
    collector.tune(1234)
    assert before == (700, 10, 10), before
    assert gc.get_threshold() == (1234, collector.MIDDLE_THRESHOLD, 10), gc.get_threshold()
    assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
    assert pauses(2) == 1, pauses(2)  # tune's own full collection
    gc.collect(0)
    gc.collect(0)
    assert pauses(0) == 2, pauses(0)
    collector.tune(1234)  # a second call adds no second stopwatch
    assert pauses(2) == 2, pauses(2)
    print("ok")
    """
)


def test_tune_freezes_start_up_sets_the_thresholds_and_times_every_collection() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
