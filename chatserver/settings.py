"""Every setting, with the reason for its default next to it (SPEC section 8).

Each setting that an operator can change names its environment variable and
how it is read (`setting()`), so no module carries a magic number of its own
and no variable is named twice. `Settings.from_env()` is called once by the
CLI or the app factory; tests build `Settings` directly. Reading values,
the URLs settings name and the refused configurations live in
chatserver/config/.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from chatserver.config import checks
from chatserver.config.env import (
    SettingsError,
    base_url,
    choice,
    directory,
    env_names,
    keys,
    lower,
    number,
    read_fields,
    setting,
    split_list,
    text,
    verbatim,
)
from chatserver.config.urls import (
    DATABASE_DRIVERS,
    ClusterUrl,
    cluster_url,
    is_cluster_url,
    is_loopback,
    mask_url,
    normalise_database_url,
    url_host,
)

__all__ = [
    "DATABASE_DRIVERS",
    "DEFAULT_DATA_DIR",
    "DEFAULT_SECRET",
    "ENV_NAMES",
    "ClusterUrl",
    "Settings",
    "SettingsError",
    "cluster_url",
    "is_cluster_url",
    "mask_url",
    "normalise_database_url",
    "url_host",
]

# The secret used when none is configured. Fine for the embedded default on a
# laptop; refused in production because anyone could forge links with it.
DEFAULT_SECRET = "insecure-development-secret"
DEFAULT_DATA_DIR = Path("data")

# The log levels an operator may ask for, and the formats of a log line.
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
# Names of chatserver/ops/faults.py's fault points ("" arms none).
TEST_FAULTS = ("", "kill_after_commit")

# Settings whose values `chatserver check` never prints.
_SECRET_WORDS = ("secret", "api_keys", "ops_keys", "password")


@dataclass(frozen=True)
class Settings:
    database_url: str = setting("DATABASE_URL", "", text)
    redis_url: str = setting("REDIS_URL", "", text)
    # Prefix of every Redis key and pub/sub channel, so tests (and several
    # deployments) can share one Redis without seeing each other.
    redis_prefix: str = setting("CHAT_REDIS_PREFIX", "chat:", verbatim)
    port: int = setting("PORT", 8000, number)
    # Where the server listens; `serve --host` changes it. Loopback by
    # default: the embedded default is a laptop's, not the network's. With
    # the base URL it decides whether anyone beyond this machine can reach
    # the server, and so whether the development secret may be used.
    host: str = setting("--host", "127.0.0.1")
    workers: int = setting("WEB_CONCURRENCY", 1, number)
    base_url: str = setting("CHAT_BASE_URL", "http://127.0.0.1:8000", base_url)
    # Whether CHAT_BASE_URL was set: if not, the base URL follows the
    # address the server listens on (`--host`, `--port`, `PORT`).
    base_url_configured: bool = False
    secret_keys: tuple[str, ...] = setting("CHAT_SECRET_KEYS", (DEFAULT_SECRET,), keys)
    api_keys: tuple[str, ...] = setting("CHAT_API_KEYS", (), keys)
    # Bearer keys that may read /metrics (SPEC section 8). None by default:
    # the metrics name every worker and its load, which is for operators.
    ops_keys: tuple[str, ...] = setting("CHAT_OPS_KEYS", (), keys)
    allowed_origins: tuple[str, ...] = setting("CHAT_ALLOWED_ORIGINS", (), split_list)
    # Origins allowed to embed the pages in an iframe (the host ATS).
    frame_ancestors: tuple[str, ...] = setting("CHAT_FRAME_ANCESTORS", (), split_list)
    smtp_url: str = setting("CHAT_SMTP_URL", "", text)
    mail_from: str = setting("CHAT_MAIL_FROM", "chatserver <chat@localhost>", verbatim)
    notify_delay_seconds: float = setting("CHAT_NOTIFY_DELAY_SECONDS", 120.0, number)
    digest_hour: int = setting("CHAT_DIGEST_HOUR", 7, number)
    # How often the notifier looks for due emails; a tenth of the default
    # delay keeps emails within a few seconds of their due time.
    notify_poll_seconds: float = setting("CHAT_NOTIFY_POLL_SECONDS", 5.0, number)
    data_dir: Path = setting("CHAT_DATA_DIR", DEFAULT_DATA_DIR, directory)
    attachments_dir: Path = setting(
        "CHAT_ATTACHMENTS_DIR", DEFAULT_DATA_DIR / "attachments", directory
    )
    outbox_dir: Path = setting("CHAT_OUTBOX_DIR", DEFAULT_DATA_DIR / "outbox", directory)
    # Files uploaded and never sent are deleted after this many days (by the
    # notifier, `chat/uploads.py`): long enough for a draft left open over a
    # holiday, short enough that abandoned uploads do not pile up.
    unsent_upload_days: float = setting("CHAT_UNSENT_UPLOAD_DAYS", 14.0, number)
    # A person typing sustains well under 2 messages/s; a burst of 20 covers
    # pasting a few lines in quick succession and client retries after a
    # reconnect.
    send_rate: float = setting("CHAT_SEND_RATE", 2.0, number)
    send_burst: int = setting("CHAT_SEND_BURST", 20, number)
    max_connections_per_user: int = setting("CHAT_MAX_CONNECTIONS_PER_USER", 20, number)
    # Frames other than sends (subscribe, unsubscribe, read, typing, inbox,
    # ping) per socket: a page subscribes to a handful of conversations on
    # (re)connect and then sends a read or a typing now and then. A
    # subscribe can replay a whole history, so a flood of them must not go
    # through: past the burst, each frame over the rate is answered
    # `rate_limited` and not processed.
    frame_rate: float = setting("CHAT_FRAME_RATE", 10.0, number)
    frame_burst: int = setting("CHAT_FRAME_BURST", 50, number)
    # Reply by email: the domain of the reply addresses that notification
    # emails carry in Reply-To. Empty turns the feature off: emails carry no
    # Reply-To and nothing accepts replies. `chatserver demo` uses
    # reply.localhost, so its local mailbox can show replying.
    reply_domain: str = setting("CHAT_REPLY_DOMAIN", "", lower)
    # Where `chatserver mail-in` listens (`mail-in --host`, `--port`).
    # Loopback by default, like the web server: the MX host's port 25 is
    # mapped to it or a relay forwards to it. An unprivileged port, so it
    # runs without root.
    mail_in_host: str = setting("--host (mail-in)", "127.0.0.1")
    mail_in_port: int = setting("CHAT_MAIL_IN_PORT", 2525, number)
    # mail-in's certificate chain and private key (PEM files; the key may be
    # in the certificate's file): with them it offers STARTTLS, so sending
    # servers that ask deliver replies encrypted. Opportunistic, as mail
    # between servers is: a sender that does not ask still delivers in plain.
    mail_in_tls_cert: str = setting("CHAT_MAIL_IN_TLS_CERT", "", text)
    mail_in_tls_key: str = setting("CHAT_MAIL_IN_TLS_KEY", "", text)
    # The largest reply email taken, raw (attachments base64-encoded): 25 MB
    # is what the big mailbox providers let a person send, and it carries
    # one or two attachments of the upload limit (10 MiB) after encoding.
    mail_max_bytes: int = setting("CHAT_MAIL_MAX_BYTES", 25 * 1024 * 1024, number)

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
    db_pool_size: int = setting("CHAT_DB_POOL_SIZE", 10, number)
    db_pool_overflow: int = setting("CHAT_DB_POOL_OVERFLOW", 10, number)

    # Group commit: sends that arrive while a batch is being written wait for
    # the next one, at most this many per transaction.
    send_batch_max: int = 256
    # After a batch commits its senders are answered, then its events are
    # published; a publish still running after this long is left to finish
    # on its own, so a stalled Redis never delays the next batch's acks
    # (rooms catch up from the database).
    publish_timeout_seconds: float = setting("CHAT_PUBLISH_TIMEOUT", 0.5, number)
    # A send not answered within this is answered `unavailable` (a slow
    # database, a pool with no free connection); the client retries with
    # the same client_id.
    send_timeout_seconds: float = setting("CHAT_SEND_TIMEOUT", 10.0, number)

    # A web worker's cycle collector runs a young collection after this
    # many new containers (Python's default: 700), with what start-up built
    # frozen; chatserver/ops/collector.py says why. 700 restores the default
    # thresholds' young generation (start-up stays frozen).
    gc_young_threshold: int = setting("CHAT_GC_YOUNG_THRESHOLD", 50_000, number)

    # Logging (chatserver/logs.py): info shows one line per request and
    # start-up; migrations speak only at debug. json suits log shippers.
    log_level: str = setting("CHAT_LOG_LEVEL", "info", choice(LOG_LEVELS))
    log_format: str = setting("CHAT_LOG_FORMAT", "text", choice(LOG_FORMATS))

    # Addresses whose X-Forwarded-For/-Proto uvicorn trusts (the reverse
    # proxy's). Loopback by default: a proxy on the same machine.
    forwarded_allow_ips: tuple[str, ...] = setting(
        "FORWARDED_ALLOW_IPS", ("127.0.0.1",), split_list
    )
    # On SIGTERM, how long in-flight HTTP requests may take to finish before
    # the worker exits; sockets are closed at once with 1012 (service
    # restart). Under the 30 s after which platforms send SIGKILL.
    shutdown_grace_seconds: int = 20

    # Test-only (chatserver/ops/faults.py): a fault point that kills the
    # worker at an exact step, for the fault tests. Empty in production.
    test_fault: str = setting("CHAT_TEST_FAULT", "", choice(TEST_FAULTS))

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
        return is_loopback(self.host) and is_loopback(host)

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

    def warnings(self, *, host_api: bool = True) -> list[str]:
        """What a production deployment can run without, but should not:
        logged at start, one line each. `host_api`: whether the process
        serves the host API (the notifier and mail-in do not)."""
        return checks.warnings(self, host_api=host_api)

    def validate(self) -> None:
        """Refuse configurations that would be unsafe or cannot work."""
        checks.validate(self)

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
            elif item.name == "allowed_origins" and not value:
                # Unset is not "none allowed": CHAT_BASE_URL's origin is.
                shown = f"{self.base_origin} (CHAT_BASE_URL's origin)"
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
        data_dir = directory(env, ENV_NAMES["data_dir"], DEFAULT_DATA_DIR)
        values = read_fields(
            cls,
            env,
            {
                "data_dir": data_dir,
                "attachments_dir": data_dir / "attachments",
                "outbox_dir": data_dir / "outbox",
                "notify_delay_seconds": 30.0 if demo else cls.notify_delay_seconds,
                "reply_domain": "reply.localhost" if demo else cls.reply_domain,
            },
        )
        configured = values["base_url"]
        values["base_url"] = configured or f"http://127.0.0.1:{values['port']}"
        return cls(**values, base_url_configured=bool(configured), demo_mode=demo)


# The environment variable (or command-line flag) of each setting, for
# `chatserver check` and the README's table.
ENV_NAMES = env_names(Settings)
