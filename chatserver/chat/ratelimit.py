"""Token buckets: the per-user send rate limit, a bucket per person per
worker, and the per-connection frame limit, a bucket per socket.

These buckets live in one worker's memory: `chatserver/chat/limits.py`
shares the per-person limits across workers through Redis and falls back
to them here while Redis is down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from chatserver.errors import ChatError, ErrorCode

# Buckets idle this long are full again anyway; forgetting them bounds memory.
FORGET_AFTER_SECONDS = 600.0


class TokenBucket:
    """One bucket of `burst` tokens refilled at `rate` per second.

    Slotted and without a clock of its own: a worker holds one per socket,
    and the caller already knows the time.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> int:
        """Spend one token: 0, or the milliseconds until one is there."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return max(1, math.ceil((1.0 - self.tokens) / self.rate * 1000))
        self.tokens -= 1.0
        return 0


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._now = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, stamp)
        self._last_sweep = monotonic()

    def take(self, key: str) -> None:
        """Spend one token or raise `rate_limited` with the wait in ms."""
        wait_ms = self.wait_ms(key)
        if wait_ms:
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                "You are sending messages too quickly; wait a moment.",
                retry_after_ms=wait_ms,
            )

    def wait_ms(self, key: str) -> int:
        """Spend one token: 0, or the milliseconds until one is there."""
        now = self._now()
        tokens, stamp = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate * 1000))
        self._buckets[key] = (tokens - 1.0, now)
        self._sweep(now)
        return 0

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < FORGET_AFTER_SECONDS:
            return
        self._last_sweep = now
        stale = [k for k, (_, stamp) in self._buckets.items() if now - stamp > FORGET_AFTER_SECONDS]
        for key in stale:
            del self._buckets[key]
