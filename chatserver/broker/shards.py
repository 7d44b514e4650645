"""Naming and reaching the shards of a Redis Cluster.

Wire names are `<prefix>{<channel>}`: the hash tag makes the slot of a
channel a function of the logical channel alone, and lets keys about the
same thing (a conversation's presence) live on the same shard. The key
users (presence, worker stats, probes) and the cluster broker name channels
and reach the cluster the same way, so the names and the clients are made
here, once.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection

from chatserver.broker.reader import PUBSUB_PROTOCOL
from chatserver.settings import ClusterUrl


def wire_channel(prefix: str, channel: str) -> str:
    """The shard channel on the wire: the logical name is the hash tag."""
    return f"{prefix}{{{channel}}}"


def logical_channel(prefix: str, wire: bytes) -> str | None:
    """The logical channel of a wire name; None if it is not one of ours."""
    text = wire.decode()
    head = prefix + "{"
    if not text.startswith(head) or not text.endswith("}"):
        return None
    return text[len(head) : -1]


def cluster_client(url: ClusterUrl, *, socket_timeout: float, **kwargs: Any) -> RedisCluster:
    """A `RedisCluster` on the seed nodes; partial coverage (a shard failing
    over) leaves the other shards usable instead of failing every command."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in url.seeds],
        username=url.username,
        password=url.password,
        ssl=url.tls,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        require_full_coverage=False,
        **kwargs,
    )


def node_connection(
    url: ClusterUrl, host: str, port: int, *, socket_timeout: float
) -> AbstractConnection:
    """A pub/sub connection of its own to one node, outside any pool: pub/sub
    mode makes it unusable for anything else."""
    kind = SSLConnection if url.tls else Connection
    return kind(
        host=host,
        port=port,
        username=url.username,
        password=url.password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        protocol=PUBSUB_PROTOCOL,
    )
