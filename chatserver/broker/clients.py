"""A Redis client for keys (presence, worker stats, probes), from REDIS_URL.

One server or a cluster: the modules that keep keys in Redis call
`key_client` and use single-key commands and non-transactional pipelines,
which work on both (a cluster pipeline is split per primary). Keys that
must share a shard carry the same hash tag as the channel they belong to
(see `chatserver/broker/shards.py`).
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from chatserver.settings import cluster_url, is_cluster_url

KeyClient: TypeAlias = Redis | RedisCluster

# What a command raises when Redis is unreachable or refuses: a cluster with
# no reachable node raises RedisClusterException, which is not a RedisError.
KEY_ERRORS = (RedisError, RedisClusterException, OSError)


def key_client(url: str, *, timeout: float) -> KeyClient:
    """A client that gives up on a dead server after `timeout` seconds."""
    if is_cluster_url(url):
        from chatserver.broker.shards import cluster_client

        return cluster_client(cluster_url(url), socket_timeout=timeout)
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
