"""Telling a cluster's subscribers that a publish failed on their channel.

After a failover each worker learns the new slot map on its own, so a
worker may fail to publish a message (stored, acknowledged) after the
subscribers elsewhere have already re-subscribed and caught up, and nothing
would tell them. Such a worker remembers the channel and, once SPUBLISH
works again, publishes `MISSED` on it; every subscriber that receives it
gets a Resync. `MISSED` is therefore a reserved payload on the cluster
backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from redis.asyncio.cluster import RedisCluster

# Published on a channel after a failed publish: "you may have missed one".
# No event is encoded with a NUL byte, so no payload can be mistaken for it.
MISSED = b"\x00chatserver:missed\x00"
# Channels remembered for a MISSED; past this many (a long outage on a busy
# worker) the oldest are dropped and counted in `dropped`.
MAX_MISSED_CHANNELS = 100_000
# MISSED announcements in flight at once.
ANNOUNCE_BATCH = 100


class MissedChannels:
    """Channels a publish failed on, in order, for the MISSED after."""

    def __init__(self) -> None:
        self._channels: dict[str, None] = {}
        self.dropped = 0

    def remember(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self._channels[channel] = None
        while len(self._channels) > MAX_MISSED_CHANNELS:
            del self._channels[next(iter(self._channels))]
            self.dropped += 1

    async def announce(self, client: RedisCluster, wire: Callable[[str], bytes]) -> bool:
        """Publish MISSED on every channel remembered; True once all went out
        (the rest wait for the next round)."""
        if not self._channels:
            return True
        channels = list(self._channels)
        for start in range(0, len(channels), ANNOUNCE_BATCH):
            batch = channels[start : start + ANNOUNCE_BATCH]
            results = await asyncio.gather(
                *(client.spublish(wire(channel), MISSED) for channel in batch),
                return_exceptions=True,
            )
            for channel, result in zip(batch, results, strict=True):
                if not isinstance(result, BaseException):
                    self._channels.pop(channel, None)
        return not self._channels
