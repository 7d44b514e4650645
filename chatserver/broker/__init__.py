"""Pub/sub between the workers of one deployment, chosen by URL.

The Redis backend is imported only when a Redis URL is configured, so the
embedded single-worker setup never touches the redis package.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from chatserver.broker.base import (
    DEFAULT_QUEUE_SIZE,
    RESYNC,
    Broker,
    Delivery,
    Event,
    Listener,
    Resync,
    Subscription,
    SubscriptionClosed,
)
from chatserver.broker.memory import MemoryBroker
from chatserver.settings import SettingsError, is_cluster_url

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})

__all__ = [
    "RESYNC",
    "Broker",
    "Delivery",
    "Event",
    "Listener",
    "MemoryBroker",
    "Resync",
    "Subscription",
    "SubscriptionClosed",
    "broker_from_url",
]


def broker_from_url(
    url: str | None, *, prefix: str = "chat:", queue_size: int = DEFAULT_QUEUE_SIZE
) -> Broker:
    """An empty URL or memory:// gives the in-process broker; redis://, rediss://
    and unix:// give Redis pub/sub with channels namespaced by `prefix`;
    redis+cluster:// (seed nodes) gives sharded pub/sub on a Redis Cluster."""
    if not url or url == "memory://":
        return MemoryBroker(queue_size=queue_size)
    if is_cluster_url(url):
        from chatserver.broker.cluster import ClusterBroker

        return ClusterBroker(url, prefix=prefix, queue_size=queue_size)
    scheme = urlsplit(url).scheme
    if scheme in _REDIS_SCHEMES:
        from chatserver.broker.redis import RedisBroker

        return RedisBroker(url, prefix=prefix, queue_size=queue_size)
    raise SettingsError(
        f"REDIS_URL scheme {scheme!r} is not supported: use redis://, rediss://, unix:// "
        "or redis+cluster://"
    )
