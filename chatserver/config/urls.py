"""The URLs and addresses settings name: masked for logs, normalised for
SQLAlchemy, a Redis Cluster's seed list, whether a host is this machine.

Kept apart from the settings so the broker can parse REDIS_URL and the
operations can mask any URL without reading the rest of the configuration.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from chatserver.config.env import SettingsError

# What DATABASE_URL may name once normalised: PostgreSQL through psycopg 3
# in production, SQLite through aiosqlite for the embedded default.
DATABASE_DRIVERS = ("postgresql+psycopg://", "sqlite+aiosqlite:///")


def url_host(host: str) -> str:
    """The host part of a URL for a listen address: a wildcard bind is
    reached on loopback from this machine; IPv6 literals get brackets."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def mask_url(url: str) -> str:
    """A URL with its password replaced, for logs and `chatserver check`."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def normalise_database_url(url: str) -> str:
    """Accept the `postgres://` form that hosting platforms hand out.

    SQLAlchemy needs an explicit async driver in the scheme: psycopg (v3) for
    PostgreSQL and aiosqlite for SQLite.
    """
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


# REDIS_URL schemes that name a Redis Cluster by seed nodes (SPEC section 8);
# the value says whether the connections use TLS.
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
DEFAULT_REDIS_PORT = 6379


@dataclass(frozen=True)
class ClusterUrl:
    """A Redis Cluster named by REDIS_URL: some of its nodes, from which the
    client learns the rest (any one reachable seed is enough)."""

    seeds: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def cluster_url(url: str) -> ClusterUrl:
    """Parse `redis+cluster://[user:password@]host:port[,host:port...]`
    (or `rediss+cluster://` for TLS). A cluster has only database 0, so a
    path other than `/0` is refused rather than silently ignored."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in CLUSTER_SCHEMES:
        raise SettingsError(f"REDIS_URL {mask_url(url)!r} does not name a Redis Cluster.")
    netloc, _, tail = rest.partition("/")
    netloc, _, query = netloc.partition("?")
    path, _, path_query = tail.partition("?")
    if path not in ("", "0") or query or path_query:
        raise SettingsError(
            "REDIS_URL for a cluster takes seed nodes only "
            "(redis+cluster://host:port[,host:port...]): a cluster has no database "
            "number and no options in the URL."
        )
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    seeds = tuple(_seed(part) for part in hosts.split(","))
    return ClusterUrl(seeds, username, password, CLUSTER_SCHEMES[scheme.lower()])


def _seed(part: str) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):
        host, _, after = part[1:].partition("]")
        port_text = after.removeprefix(":")
    else:
        host, _, port_text = part.partition(":")
    try:
        port = int(port_text) if port_text else DEFAULT_REDIS_PORT
    except ValueError:
        port = 0
    if not host or not 1 <= port <= 65535:
        raise SettingsError(
            f"REDIS_URL seed node {part!r} is not host:port "
            "(redis+cluster://host:port[,host:port...])."
        )
    return host, port


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; anything else (0.0.0.0, a name, a
    public address) may be reachable from elsewhere."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
