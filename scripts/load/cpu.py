"""Where the CPU went during a step (the workers, PostgreSQL, Redis, the
load generator, anything else on the machine), from /proc, and py-spy
profiles of the workers summarised by the functions that took the time.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# py-spy samples per second while profiling a worker.
PROFILE_RATE = 250
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of processes, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat, not idle or iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def pids_named(name: str) -> list[int]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


class CpuMeter:
    """CPU seconds spent during a step by the workers, PostgreSQL, Redis and
    this load generator: tells which of them the 2 cores went to."""

    def __init__(self, worker_pids: Sequence[int]) -> None:
        self.groups: dict[str, Callable[[], list[int]]] = {
            "workers": lambda: list(worker_pids),
            "postgres": lambda: pids_named("postgres"),
            "redis": lambda: pids_named("redis-server"),
        }
        self.start: dict[str, dict[int, float]] = {}
        self.started = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        """CPU seconds by group and process; the load generator is pid 0 and
        the machine's busy time pid -1."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        sample = {
            name: {pid: cpu_seconds([pid]) for pid in pids()} for name, pids in self.groups.items()
        }
        sample["loadgen"] = {0: usage.ru_utime + usage.ru_stime}
        sample["machine"] = {-1: machine_busy_seconds()}
        return sample

    def begin(self) -> None:
        self.start = self._sample()
        self.started = time.monotonic()

    def end(self) -> dict[str, float]:
        """Cores used by each group over the step (1.0 = one core busy).
        Processes that ended meanwhile (a killed worker's database backends)
        drop out rather than subtract their whole past from the sum."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        end = self._sample()
        cores = {}
        for group, now in end.items():
            before = self.start.get(group, {})
            spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in now.items())
            cores[group] = round(spent / elapsed, 2)
        # Whatever else ran on the machine meanwhile (other jobs, the kernel's
        # network stack) competed for the same cores.
        ours = sum(v for k, v in cores.items() if k != "machine")
        cores["others"] = round(max(cores.pop("machine") - ours, 0.0), 2)
        return cores


def py_spy() -> str:
    """py-spy from this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def summarise_profile(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Collapsed py-spy stacks → the functions that hold the most samples,
    by self time (the leaf) and inclusive (anywhere on the stack)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {}

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"self_pct": share(own), "inclusive_pct": share(inclusive)}


def _frame_name(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py)`."""
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} ({module})" if module else name
