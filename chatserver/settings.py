"""All configuration, read once from the environment (SPEC section 8).

Every tunable lives here with the reason for its default next to it, so no
module carries a magic number of its own. `Settings.from_env()` is called once
by the CLI or the app factory; tests build `Settings` directly.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The secret used when none is configured. Fine for the embedded default on a
# laptop; refused in production because anyone could forge links with it.
DEFAULT_SECRET = "insecure-development-secret"
DEFAULT_DATA_DIR = Path("data")
# A DNS name (ASCII labels of letters, digits and inner hyphens), as the
# domain of the reply addresses.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
REPLY_DOMAIN = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}")


# The log levels an operator may ask for, and the formats of a log line.
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
# Names of chatserver/ops/faults.py's fault points ("" arms none).
TEST_FAULTS = ("", "kill_after_commit")

# Settings whose values `chatserver check` never prints.
_SECRET_WORDS = ("secret", "api_keys", "ops_keys", "password")

# The environment variable of each setting, for `chatserver check`.
ENV_NAMES = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "redis_prefix": "CHAT_REDIS_PREFIX",
    "port": "PORT",
    "host": "--host",
    "workers": "WEB_CONCURRENCY",
    "base_url": "CHAT_BASE_URL",
    "secret_keys": "CHAT_SECRET_KEYS",
    "api_keys": "CHAT_API_KEYS",
    "ops_keys": "CHAT_OPS_KEYS",
    "allowed_origins": "CHAT_ALLOWED_ORIGINS",
    "frame_ancestors": "CHAT_FRAME_ANCESTORS",
    "smtp_url": "CHAT_SMTP_URL",
    "mail_from": "CHAT_MAIL_FROM",
    "notify_delay_seconds": "CHAT_NOTIFY_DELAY_SECONDS",
    "digest_hour": "CHAT_DIGEST_HOUR",
    "notify_poll_seconds": "CHAT_NOTIFY_POLL_SECONDS",
    "data_dir": "CHAT_DATA_DIR",
    "attachments_dir": "CHAT_ATTACHMENTS_DIR",
    "outbox_dir": "CHAT_OUTBOX_DIR",
    "send_rate": "CHAT_SEND_RATE",
    "send_burst": "CHAT_SEND_BURST",
    "max_connections_per_user": "CHAT_MAX_CONNECTIONS_PER_USER",
    "frame_rate": "CHAT_FRAME_RATE",
    "frame_burst": "CHAT_FRAME_BURST",
    "reply_domain": "CHAT_REPLY_DOMAIN",
    "mail_in_host": "--host (mail-in)",
    "mail_in_port": "CHAT_MAIL_IN_PORT",
    "mail_max_bytes": "CHAT_MAIL_MAX_BYTES",
    "db_pool_size": "CHAT_DB_POOL_SIZE",
    "db_pool_overflow": "CHAT_DB_POOL_OVERFLOW",
    "publish_timeout_seconds": "CHAT_PUBLISH_TIMEOUT",
    "send_timeout_seconds": "CHAT_SEND_TIMEOUT",
    "log_level": "CHAT_LOG_LEVEL",
    "log_format": "CHAT_LOG_FORMAT",
    "forwarded_allow_ips": "FORWARDED_ALLOW_IPS",
    "test_fault": "CHAT_TEST_FAULT",
}

# What DATABASE_URL may name once normalised: PostgreSQL through psycopg 3
# in production, SQLite through aiosqlite for the embedded default.
DATABASE_DRIVERS = ("postgresql+psycopg://", "sqlite+aiosqlite:///")


class SettingsError(Exception):
    """Configuration that the service must refuse to start with.

    The message is one line that names the setting and says how to fix it:
    the CLI prints it as is and exits non-zero.
    """


def _split_list(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _split_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of keys. A `;` is refused: it is the usual
    slip for a comma, and taking "a;b" as one key would silently accept
    neither."""
    keys = _split_list(env.get(name))
    if any(";" in key for key in keys):
        raise SettingsError(
            f"{name} contains ';': separate keys with commas ({name}=first-key,second-key)."
        )
    return keys


def _number(env: Mapping[str, str], name: str, default: str, kind: type[int] | type[float]) -> Any:
    # Only the blanks a shell or an env file leaves: str.strip() would also
    # drop control characters ("0\x1f" read as 0) that int() and float() refuse.
    raw = env.get(name, default).strip(" \t\r\n") or default
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(
            f"{name} must be {what}, not {raw!r}: set {name}={default} or leave it unset."
        ) from None


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, default).strip().lower() or default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {raw!r}.")
    return raw


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


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; anything else (0.0.0.0, a name, a
    public address) may be reachable from elsewhere."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    redis_url: str = ""
    # Prefix of every Redis key and pub/sub channel, so tests (and several
    # deployments) can share one Redis without seeing each other.
    redis_prefix: str = "chat:"
    port: int = 8000
    # Where the server listens; `serve --host` changes it. Loopback by
    # default: the embedded default is a laptop's, not the network's. With
    # the base URL it decides whether anyone beyond this machine can reach
    # the server, and so whether the development secret may be used.
    host: str = "127.0.0.1"
    workers: int = 1
    base_url: str = "http://127.0.0.1:8000"
    # Whether CHAT_BASE_URL was set: if not, the base URL follows the
    # address the server listens on (`--host`, `--port`, `PORT`).
    base_url_configured: bool = False
    secret_keys: tuple[str, ...] = (DEFAULT_SECRET,)
    api_keys: tuple[str, ...] = ()
    # Bearer keys that may read /metrics (SPEC section 8). None by default:
    # the metrics name every worker and its load, which is for operators.
    ops_keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # Origins allowed to embed the pages in an iframe (the host ATS).
    frame_ancestors: tuple[str, ...] = ()
    smtp_url: str = ""
    mail_from: str = "chatserver <chat@localhost>"
    notify_delay_seconds: float = 120.0
    digest_hour: int = 7
    # How often the notifier looks for due emails; a tenth of the default
    # delay keeps emails within a few seconds of their due time.
    notify_poll_seconds: float = 5.0
    data_dir: Path = DEFAULT_DATA_DIR
    attachments_dir: Path = DEFAULT_DATA_DIR / "attachments"
    outbox_dir: Path = DEFAULT_DATA_DIR / "outbox"
    # A person typing sustains well under 2 messages/s; a burst of 20 covers
    # pasting a few lines in quick succession and client retries after a
    # reconnect.
    send_rate: float = 2.0
    send_burst: int = 20
    max_connections_per_user: int = 20
    # Frames other than sends (subscribe, unsubscribe, read, typing, inbox,
    # ping) per socket: a page subscribes to a handful of conversations on
    # (re)connect and then sends a read or a typing now and then. A
    # subscribe can replay a whole history, so a flood of them must not go
    # through: past the burst, each frame over the rate is answered
    # `rate_limited` and not processed.
    frame_rate: float = 10.0
    frame_burst: int = 50
    # Reply by email: the domain of the reply addresses that notification
    # emails carry in Reply-To. Empty turns the feature off: emails carry no
    # Reply-To and nothing accepts replies. `chatserver demo` uses
    # reply.localhost, so its local mailbox can show replying.
    reply_domain: str = ""
    # Where `chatserver mail-in` listens (`mail-in --host`, `--port`).
    # Loopback by default, like the web server: the MX host's port 25 is
    # mapped to it or a relay forwards to it. An unprivileged port, so it
    # runs without root.
    mail_in_host: str = "127.0.0.1"
    mail_in_port: int = 2525
    # The largest reply email taken, raw (attachments base64-encoded): 25 MB
    # is what the big mailbox providers let a person send, and it carries
    # one or two attachments of the upload limit (10 MiB) after encoding.
    mail_max_bytes: int = 25 * 1024 * 1024

    # Limits from SPEC section 2 and 5.
    max_body_chars: int = 10_000
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_attachments_per_message: int = 5
    max_frame_bytes: int = 64 * 1024
    # A JSON request body larger than this is refused before parsing: the
    # largest legitimate body is a 10,000-character message (at most 40 KB
    # of UTF-8) plus a few ids.
    max_json_body_bytes: int = 256 * 1024

    # Link and session lifetimes (SPEC section 4).
    staff_link_seconds: int = 5 * 60
    candidate_link_seconds: int = 30 * 24 * 3600
    staff_session_seconds: int = 12 * 3600
    candidate_session_seconds: int = 30 * 24 * 3600

    # WebSocket liveness: a ping every 20 s and 20 s to answer detects a dead
    # peer within 40 s while costing one tiny frame per connection per 20 s.
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    # Frames a connection may have queued before it counts as too slow. A
    # busy room sends a few frames per second; 256 is a minute of backlog
    # for a person and a few milliseconds of pressure for a benchmark.
    ws_send_queue: int = 256
    # Typing frames are ephemeral; one every 2 s per person is plenty.
    typing_interval_seconds: float = 2.0

    # PostgreSQL connections per process (each web worker, each notifier):
    # group commit keeps concurrent transactions few, so 10 serve thousands
    # of sends/s; 10 more may open under a burst. docs/production.md sizes
    # max_connections from these.
    db_pool_size: int = 10
    db_pool_overflow: int = 10

    # Group commit: sends that arrive while a batch is being written wait for
    # the next one, at most this many per transaction.
    send_batch_max: int = 256
    # After a batch commits its senders are answered, then its events are
    # published; a publish still running after this long is left to finish
    # on its own, so a stalled Redis never delays the next batch's acks
    # (rooms catch up from the database).
    publish_timeout_seconds: float = 0.5
    # A send not answered within this is answered `unavailable` (a slow
    # database, a pool with no free connection); the client retries with
    # the same client_id.
    send_timeout_seconds: float = 10.0

    # Logging (chatserver/logs.py): info shows one line per request and
    # start-up; migrations speak only at debug. json suits log shippers.
    log_level: str = "info"
    log_format: str = "text"

    # Addresses whose X-Forwarded-For/-Proto uvicorn trusts (the reverse
    # proxy's). Loopback by default: a proxy on the same machine.
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    # On SIGTERM, how long in-flight HTTP requests may take to finish before
    # the worker exits; sockets are closed at once with 1012 (service
    # restart). Under the 30 s after which platforms send SIGKILL.
    shutdown_grace_seconds: int = 20

    # Test-only (chatserver/ops/faults.py): a fault point that kills the
    # worker at an exact step, for the fault tests. Empty in production.
    test_fault: str = ""

    demo_mode: bool = False

    @property
    def production(self) -> bool:
        """A configured database means a real deployment."""
        return bool(self.database_url) and not self.database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        return not self.database_url or self.database_url.startswith("sqlite")

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'chatserver.db'}"

    @property
    def base_origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def origins(self) -> tuple[str, ...]:
        return self.allowed_origins or (self.base_origin,)

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def dev_routes(self) -> bool:
        """`/dev/sign-in` and `/dev/mailbox`: only under `chatserver demo`
        on the embedded default."""
        return self.demo_mode and self.embedded

    @property
    def embeddable(self) -> bool:
        """The host ATS embeds the pages in an iframe on another site."""
        return bool(self.frame_ancestors)

    @property
    def cookie_samesite(self) -> Literal["lax", "none"]:
        """Lax keeps the session cookie on the top-level navigation from an
        email link and off every cross-site request. Only an embedding host
        page on another site needs None (which browsers accept with Secure
        only)."""
        return "none" if self.embeddable else "lax"

    @property
    def cookie_secure(self) -> bool:
        return self.secure_cookies or self.embeddable

    @property
    def loopback_only(self) -> bool:
        """Whether only this machine can reach the server: it listens on a
        loopback address and its public URL names one."""
        host = urlsplit(self.base_url).hostname or ""
        return _is_loopback(self.host) and _is_loopback(host)

    @property
    def uses_development_secret(self) -> bool:
        return not self.secret_keys or any(k == DEFAULT_SECRET for k in self.secret_keys)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def listening_on(self, host: str | None, port: int | None) -> Settings:
        """These settings for a server bound to `host`:`port` (the CLI's
        `--host`/`--port`, which win over `PORT`). Without CHAT_BASE_URL the
        links, emails and the allowed WebSocket Origin follow the address,
        exactly as `PORT` makes them do."""
        host = self.host if host is None else host
        port = self.port if port is None else port
        changed = self.with_(host=host, port=port)
        if not self.base_url_configured:
            changed = changed.with_(base_url=f"http://{url_host(host)}:{port}")
        return changed

    def warnings(self) -> list[str]:
        """What a production deployment can run without, but should not:
        logged at start, one line each."""
        if not self.production:
            return []
        found = []
        if not self.api_keys:
            found.append(
                "CHAT_API_KEYS is empty: the host API (/api/v1) refuses every request; "
                "set CHAT_API_KEYS=<random key> and give it to the host ATS."
            )
        if not self.smtp_url:
            found.append(
                f"CHAT_SMTP_URL is empty: emails are written as files to {self.outbox_dir} "
                "and nobody receives them; set CHAT_SMTP_URL=smtp://user:pass@host:587."
            )
        if not self.base_url_configured:
            found.append(
                f"CHAT_BASE_URL is not set: links in emails point to {self.base_url}; "
                "set CHAT_BASE_URL to the public https:// address."
            )
        return found

    def validate(self) -> None:
        """Refuse configurations that would be unsafe or cannot work."""
        if self.database_url and not normalise_database_url(self.database_url).startswith(
            DATABASE_DRIVERS
        ):
            raise SettingsError(
                "DATABASE_URL must be a PostgreSQL URL "
                "(postgresql://user:password@host:5432/name), not "
                f"{mask_url(self.database_url)!r}; leave it unset for the embedded SQLite."
            )
        if self.database_url:
            try:
                make_url(normalise_database_url(self.database_url))
            except (ArgumentError, ValueError) as exc:
                # ArgumentError quotes the whole URL, password included.
                reason = "not a URL" if isinstance(exc, ArgumentError) else str(exc)
                raise SettingsError(
                    f"DATABASE_URL cannot be read ({reason}): write it as "
                    "postgresql://user:password@host:5432/name."
                ) from None
        if not 1 <= self.port <= 65535:
            raise SettingsError(f"PORT must be a port from 1 to 65535, not {self.port}.")
        if self.workers < 1:
            raise SettingsError(
                f"WEB_CONCURRENCY (--workers) must be 1 or more, not {self.workers}."
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"CHAT_BASE_URL must start with https:// or http://, not {self.base_url!r}."
            )
        if self.production and self.uses_development_secret:
            raise SettingsError(
                "CHAT_SECRET_KEYS must be set to a random secret in production "
                "(a DATABASE_URL is set); refusing to start with the default."
            )
        if self.uses_development_secret and not self.loopback_only:
            # The development secret is public: anyone who can reach the
            # server could forge sign-in links with it, whatever the database.
            raise SettingsError(
                "CHAT_SECRET_KEYS must be set to a random secret when the server is "
                f"reachable beyond this machine (listening on {self.host}, "
                f"CHAT_BASE_URL {self.base_url}); the development secret is accepted "
                "only with a loopback --host and a loopback CHAT_BASE_URL."
            )
        if self.production and any(len(k) < 16 for k in self.secret_keys):
            raise SettingsError("CHAT_SECRET_KEYS entries must be at least 16 characters.")
        if self.workers > 1 and not self.redis_url:
            raise SettingsError(
                "More than one worker needs REDIS_URL: workers share live messages "
                "through Redis pub/sub. Set REDIS_URL or run with --workers 1."
            )
        if is_cluster_url(self.redis_url):
            cluster_url(self.redis_url)  # raises on a malformed seed list
        if self.db_pool_size < 1 or self.db_pool_overflow < 0:
            raise SettingsError(
                "CHAT_DB_POOL_SIZE must be 1 or more and CHAT_DB_POOL_OVERFLOW 0 or more."
            )
        if self.send_rate <= 0 or self.send_burst < 1:
            raise SettingsError(
                "CHAT_SEND_RATE must be above 0 and CHAT_SEND_BURST 1 or more "
                f"(a zero rate would refuse every message), not {self.send_rate} and "
                f"{self.send_burst}."
            )
        if self.frame_rate <= 0 or self.frame_burst < 1:
            raise SettingsError(
                "CHAT_FRAME_RATE must be above 0 and CHAT_FRAME_BURST 1 or more "
                f"(a zero rate would refuse every frame), not {self.frame_rate} and "
                f"{self.frame_burst}."
            )
        if not 0 <= self.digest_hour <= 23:
            raise SettingsError("CHAT_DIGEST_HOUR must be an hour from 0 to 23.")
        if self.reply_domain and not REPLY_DOMAIN.fullmatch(self.reply_domain):
            raise SettingsError(
                "CHAT_REPLY_DOMAIN must be a domain name such as reply.example.com "
                "(letters, digits, hyphens and dots; no @, scheme or port)."
            )
        if not 1 <= self.mail_in_port <= 65535:
            raise SettingsError(
                "CHAT_MAIL_IN_PORT (mail-in --port) must be a port from 1 to 65535, "
                f"not {self.mail_in_port}."
            )
        if self.mail_max_bytes < 64 * 1024:
            raise SettingsError(
                f"CHAT_MAIL_MAX_BYTES must be at least 65536 (64 KiB), not {self.mail_max_bytes}."
            )
        if self.uses_development_secret and not _is_loopback(self.mail_in_host):
            # Reply addresses are signed with it: anyone could make one up
            # and post as anybody.
            raise SettingsError(
                "CHAT_SECRET_KEYS must be set to a random secret when mail-in listens "
                f"beyond this machine (--host {self.mail_in_host}); the development secret "
                "is accepted only with a loopback --host."
            )

    def described(self) -> list[tuple[str, str]]:
        """Every setting as `chatserver check` prints it: by its environment
        name where it has one, secrets masked (keys by count, URLs without
        their password)."""
        rows = []
        for item in fields(self):
            value = getattr(self, item.name)
            if any(word in item.name for word in _SECRET_WORDS):
                shown = f"{len(value)} set (masked)" if value else "none"
            elif isinstance(value, str) and "://" in value:
                shown = mask_url(value)
            elif isinstance(value, tuple):
                shown = ",".join(str(v) for v in value) or "none"
            else:
                shown = str(value) if value != "" else "none"
            rows.append((ENV_NAMES.get(item.name, item.name), shown))
        return rows

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, demo: bool = False) -> Settings:
        """Settings from the environment. A value that cannot be read raises
        `SettingsError` naming the variable, never a bare ValueError.

        `demo` (`chatserver demo`) turns on the demo's pages, and emails
        reach the local mailbox after 30 s instead of 2 minutes so a
        newcomer sees the notifier work while exploring."""
        env = os.environ if env is None else env
        port = _number(env, "PORT", "8000", int)
        data_dir = Path(env.get("CHAT_DATA_DIR", str(DEFAULT_DATA_DIR)))
        base_url = env.get("CHAT_BASE_URL", "").strip().rstrip("/")
        return cls(
            database_url=env.get("DATABASE_URL", "").strip(),
            redis_url=env.get("REDIS_URL", "").strip(),
            redis_prefix=env.get("CHAT_REDIS_PREFIX", "chat:"),
            port=port,
            workers=_number(env, "WEB_CONCURRENCY", "1", int),
            base_url=base_url or f"http://127.0.0.1:{port}",
            base_url_configured=bool(base_url),
            secret_keys=_split_keys(env, "CHAT_SECRET_KEYS") or (DEFAULT_SECRET,),
            api_keys=_split_keys(env, "CHAT_API_KEYS"),
            ops_keys=_split_keys(env, "CHAT_OPS_KEYS"),
            allowed_origins=_split_list(env.get("CHAT_ALLOWED_ORIGINS")),
            frame_ancestors=_split_list(env.get("CHAT_FRAME_ANCESTORS")),
            smtp_url=env.get("CHAT_SMTP_URL", "").strip(),
            mail_from=env.get("CHAT_MAIL_FROM", cls.mail_from),
            notify_delay_seconds=_number(
                env, "CHAT_NOTIFY_DELAY_SECONDS", "30" if demo else "120", float
            ),
            digest_hour=_number(env, "CHAT_DIGEST_HOUR", "7", int),
            notify_poll_seconds=_number(env, "CHAT_NOTIFY_POLL_SECONDS", "5", float),
            data_dir=data_dir,
            attachments_dir=Path(env.get("CHAT_ATTACHMENTS_DIR", str(data_dir / "attachments"))),
            outbox_dir=Path(env.get("CHAT_OUTBOX_DIR", str(data_dir / "outbox"))),
            send_rate=_number(env, "CHAT_SEND_RATE", "2", float),
            send_burst=_number(env, "CHAT_SEND_BURST", "20", int),
            max_connections_per_user=_number(env, "CHAT_MAX_CONNECTIONS_PER_USER", "20", int),
            frame_rate=_number(env, "CHAT_FRAME_RATE", "10", float),
            frame_burst=_number(env, "CHAT_FRAME_BURST", "50", int),
            db_pool_size=_number(env, "CHAT_DB_POOL_SIZE", "10", int),
            db_pool_overflow=_number(env, "CHAT_DB_POOL_OVERFLOW", "10", int),
            publish_timeout_seconds=_number(env, "CHAT_PUBLISH_TIMEOUT", "0.5", float),
            send_timeout_seconds=_number(env, "CHAT_SEND_TIMEOUT", "10", float),
            log_level=_choice(env, "CHAT_LOG_LEVEL", "info", LOG_LEVELS),
            log_format=_choice(env, "CHAT_LOG_FORMAT", "text", LOG_FORMATS),
            reply_domain=env.get("CHAT_REPLY_DOMAIN", "reply.localhost" if demo else "")
            .strip()
            .lower(),
            mail_in_port=_number(env, "CHAT_MAIL_IN_PORT", "2525", int),
            mail_max_bytes=_number(env, "CHAT_MAIL_MAX_BYTES", str(cls.mail_max_bytes), int),
            forwarded_allow_ips=_split_list(env.get("FORWARDED_ALLOW_IPS", "127.0.0.1")),
            test_fault=_choice(env, "CHAT_TEST_FAULT", "", TEST_FAULTS),
            demo_mode=demo,
        )
