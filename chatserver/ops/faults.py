"""Test-only fault points: a worker that dies at an exact step, so fault
tests do not depend on timing.

`CHAT_TEST_FAULT` (settings) arms one point for the process; production
never sets it, and an unarmed point costs one comparison. Each point names
the step it follows.
"""

from __future__ import annotations

import enum
import os
import signal


class Fault(enum.StrEnum):
    # A send batch is committed and its publish has not started: the worker
    # is SIGKILLed, as by the kernel's OOM killer (docs/realtime.md).
    KILL_AFTER_COMMIT = "kill_after_commit"


_armed: Fault | None = None


def arm(name: str) -> None:
    """Arm the named point for this process ("" disarms every point)."""
    global _armed
    _armed = Fault(name) if name else None


def reached(point: Fault) -> None:
    """A fault point: does nothing unless this point is armed."""
    if _armed is point and point is Fault.KILL_AFTER_COMMIT:
        os.kill(os.getpid(), signal.SIGKILL)
