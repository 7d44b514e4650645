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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

# The secret used when none is configured. Fine for the embedded default on a
# laptop; refused in production because anyone could forge links with it.
DEFAULT_SECRET = "insecure-development-secret"
DEFAULT_DATA_DIR = Path("data")
# A DNS name (ASCII labels of letters, digits and inner hyphens), as the
# domain of the reply addresses.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
REPLY_DOMAIN = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}")


class SettingsError(Exception):
    """Configuration that the service must refuse to start with."""


def _split_list(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


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
    workers: int = 1
    base_url: str = "http://127.0.0.1:8000"
    secret_keys: tuple[str, ...] = (DEFAULT_SECRET,)
    api_keys: tuple[str, ...] = ()
    # Bearer keys that may read /metrics (SPEC section 8). None by default:
    # the metrics name every worker and its load, which is for operators.
    ops_keys: tuple[str, ...] = ()
    # The address the server listens on (`chatserver serve --host`): with
    # the base URL, it decides whether anyone beyond this machine can reach
    # the server, and so whether the development secret may be used.
    host: str = "127.0.0.1"
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
    # Reply by email (SPEC section 7): the domain of the reply addresses that
    # notification emails carry in Reply-To. Empty turns the feature off:
    # emails keep no Reply-To and nothing accepts replies.
    reply_domain: str = ""
    # Where `chatserver mail-in` listens: an unprivileged port, so it runs
    # without root; the MX host's port 25 is mapped to it (or a relay
    # forwards to it).
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

    # Group commit: sends that arrive while a batch is being written wait for
    # the next one, at most this many per transaction.
    send_batch_max: int = 256

    demo_mode: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

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

    def validate(self) -> None:
        """Refuse configurations that would be unsafe or cannot work."""
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
        if not 0 <= self.digest_hour <= 23:
            raise SettingsError("CHAT_DIGEST_HOUR must be an hour from 0 to 23.")
        if self.reply_domain and not REPLY_DOMAIN.fullmatch(self.reply_domain):
            raise SettingsError(
                "CHAT_REPLY_DOMAIN must be a domain name such as reply.example.com "
                "(letters, digits, hyphens and dots; no @, scheme or port)."
            )
        if not 0 < self.mail_in_port < 65536:
            raise SettingsError("CHAT_MAIL_IN_PORT must be a TCP port from 1 to 65535.")
        if self.mail_max_bytes < 64 * 1024:
            raise SettingsError("CHAT_MAIL_MAX_BYTES must be at least 65536 (64 KiB).")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        port = int(env.get("PORT", "8000"))
        data_dir = Path(env.get("CHAT_DATA_DIR", str(DEFAULT_DATA_DIR)))
        return cls(
            database_url=env.get("DATABASE_URL", ""),
            redis_url=env.get("REDIS_URL", ""),
            redis_prefix=env.get("CHAT_REDIS_PREFIX", "chat:"),
            port=port,
            workers=int(env.get("WEB_CONCURRENCY", "1")),
            base_url=env.get("CHAT_BASE_URL", f"http://127.0.0.1:{port}").rstrip("/"),
            secret_keys=_split_list(env.get("CHAT_SECRET_KEYS")) or (DEFAULT_SECRET,),
            api_keys=_split_list(env.get("CHAT_API_KEYS")),
            ops_keys=_split_list(env.get("CHAT_OPS_KEYS")),
            host=env.get("CHAT_HOST", "127.0.0.1"),
            allowed_origins=_split_list(env.get("CHAT_ALLOWED_ORIGINS")),
            frame_ancestors=_split_list(env.get("CHAT_FRAME_ANCESTORS")),
            smtp_url=env.get("CHAT_SMTP_URL", ""),
            mail_from=env.get("CHAT_MAIL_FROM", cls.mail_from),
            notify_delay_seconds=float(env.get("CHAT_NOTIFY_DELAY_SECONDS", "120")),
            digest_hour=int(env.get("CHAT_DIGEST_HOUR", "7")),
            notify_poll_seconds=float(env.get("CHAT_NOTIFY_POLL_SECONDS", "5")),
            data_dir=data_dir,
            attachments_dir=Path(env.get("CHAT_ATTACHMENTS_DIR", str(data_dir / "attachments"))),
            outbox_dir=Path(env.get("CHAT_OUTBOX_DIR", str(data_dir / "outbox"))),
            send_rate=float(env.get("CHAT_SEND_RATE", "2")),
            send_burst=int(env.get("CHAT_SEND_BURST", "20")),
            max_connections_per_user=int(env.get("CHAT_MAX_CONNECTIONS_PER_USER", "20")),
            reply_domain=env.get("CHAT_REPLY_DOMAIN", "").strip().lower(),
            mail_in_port=int(env.get("CHAT_MAIL_IN_PORT", "2525")),
            mail_max_bytes=int(env.get("CHAT_MAIL_MAX_BYTES", str(cls.mail_max_bytes))),
            demo_mode=env.get("CHAT_DEMO", "") == "1",
        )
