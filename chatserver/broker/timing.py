"""How long the Redis backends wait, and how they space their retries.

One server or a cluster, a pub/sub connection is the same thing to keep
alive: the same timeouts, the same keepalive and the same reconnect pacing.
They are defined once here so both backends, and the cluster's router,
pace themselves alike.
"""

from __future__ import annotations

import random

# Connect, write and confirmation timeout. Redis answers on a LAN in well
# under a millisecond; 5 s only trips when it is really gone or wedged.
DEFAULT_SOCKET_TIMEOUT = 5.0
# An idle pub/sub connection is PINGed this often; no answer by the next tick
# means a dead peer (a vanished host sends no RST). 10 s detects it within 20 s.
DEFAULT_HEALTH_CHECK_INTERVAL = 10.0
# Reconnect backoff: first retry soon (a restart takes about a second), then
# double up to a ceiling that keeps recovery quick without hammering Redis.
DEFAULT_RECONNECT_MIN = 0.1
DEFAULT_RECONNECT_MAX = 5.0
# One immediate retry lets a publish survive a pooled connection that a Redis
# restart has closed; more would only delay the caller during an outage.
PUBLISH_RETRIES = 1


def backoff(failures: int, low: float, high: float) -> float:
    """Seconds to wait after `failures` failures in a row: doubling from `low`
    up to `high`, jittered so that many workers do not reconnect in step
    after a Redis restart."""
    ceiling = min(high, low * 2 ** max(failures - 1, 0))
    return random.uniform(ceiling / 2, ceiling)
