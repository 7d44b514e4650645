"""What a configuration must not be, and what it should not be.

`validate` refuses, with one line that names the setting and the fix, a
configuration the service cannot run safely with; `warnings` lists what a
production deployment can run without but should not. Both read the
settings as a whole, since most rules tie two settings together.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from chatserver.config.env import SettingsError
from chatserver.config.urls import (
    DATABASE_DRIVERS,
    cluster_url,
    is_cluster_url,
    is_loopback,
    mask_url,
    normalise_database_url,
)

if TYPE_CHECKING:
    from chatserver.settings import Settings

# A DNS name (ASCII labels of letters, digits and inner hyphens), as the
# domain of the reply addresses.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
REPLY_DOMAIN = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}")
# A hundred years: the expiry counts back this far from today.
MAX_UNSENT_UPLOAD_DAYS = 36_500


def warnings(settings: Settings, *, host_api: bool = True) -> list[str]:
    """What a production deployment can run without, but should not:
    logged at start, one line each; the host API's only by a process that
    serves it (`host_api`)."""
    if not settings.production:
        return []
    found = []
    if host_api and not settings.api_keys:
        found.append(
            "CHAT_API_KEYS is empty: the host API (/api/v1) refuses every request; "
            "set CHAT_API_KEYS=<random key> and give it to the host ATS."
        )
    if not settings.smtp_url:
        found.append(
            f"CHAT_SMTP_URL is empty: emails are written as files to {settings.outbox_dir} "
            "and nobody receives them; set CHAT_SMTP_URL=smtp://user:pass@host:587."
        )
    if not settings.base_url_configured:
        found.append(
            f"CHAT_BASE_URL is not set: links in emails point to {settings.base_url}; "
            "set CHAT_BASE_URL to the public https:// address."
        )
    return found


def validate(settings: Settings) -> None:
    """Refuse configurations that would be unsafe or cannot work."""
    if settings.database_url and not normalise_database_url(settings.database_url).startswith(
        DATABASE_DRIVERS
    ):
        raise SettingsError(
            "DATABASE_URL must be a PostgreSQL URL "
            "(postgresql://user:password@host:5432/name), not "
            f"{mask_url(settings.database_url)!r}; leave it unset for the embedded SQLite."
        )
    if settings.demo_mode and settings.production:
        raise SettingsError(
            "chatserver demo adds a made-up organisation, people and messages and signs "
            "links with them: it runs on the embedded default only, so unset DATABASE_URL "
            "(it names a production database)."
        )
    if settings.database_url:
        try:
            make_url(normalise_database_url(settings.database_url))
        except (ArgumentError, ValueError) as exc:
            # ArgumentError quotes the whole URL, password included.
            reason = "not a URL" if isinstance(exc, ArgumentError) else str(exc)
            raise SettingsError(
                f"DATABASE_URL cannot be read ({reason}): write it as "
                "postgresql://user:password@host:5432/name."
            ) from None
    if not 1 <= settings.port <= 65535:
        raise SettingsError(f"PORT must be a port from 1 to 65535, not {settings.port}.")
    if settings.workers < 1:
        raise SettingsError(
            f"WEB_CONCURRENCY (--workers) must be 1 or more, not {settings.workers}."
        )
    if not 1 <= settings.unsent_upload_days <= MAX_UNSENT_UPLOAD_DAYS:
        # Less would delete a draft's files while it is still being written;
        # more (or inf, or nan) is no date the expiry can count back to.
        raise SettingsError(
            f"CHAT_UNSENT_UPLOAD_DAYS must be from 1 to {MAX_UNSENT_UPLOAD_DAYS} (days "
            f"before a file never sent is deleted), not {settings.unsent_upload_days:g}."
        )
    if not settings.base_url.startswith(("http://", "https://")):
        raise SettingsError(
            f"CHAT_BASE_URL must start with https:// or http://, not {settings.base_url!r}."
        )
    if settings.production and settings.uses_development_secret:
        raise SettingsError(
            "CHAT_SECRET_KEYS must be set to a random secret in production "
            "(a DATABASE_URL is set); refusing to start with the default."
        )
    if settings.uses_development_secret and not settings.loopback_only:
        # The development secret is public: anyone who can reach the
        # server could forge sign-in links with it, whatever the database.
        raise SettingsError(
            "CHAT_SECRET_KEYS must be set to a random secret when the server is "
            f"reachable beyond this machine (listening on {settings.host}, "
            f"CHAT_BASE_URL {settings.base_url}); the development secret is accepted "
            "only with a loopback --host and a loopback CHAT_BASE_URL."
        )
    if settings.production and any(len(k) < 16 for k in settings.secret_keys):
        raise SettingsError("CHAT_SECRET_KEYS entries must be at least 16 characters.")
    if settings.workers > 1 and not settings.redis_url:
        raise SettingsError(
            "More than one worker needs REDIS_URL: workers share live messages "
            "through Redis pub/sub. Set REDIS_URL or run with --workers 1."
        )
    if is_cluster_url(settings.redis_url):
        cluster_url(settings.redis_url)  # raises on a malformed seed list
    if settings.db_pool_size < 1 or settings.db_pool_overflow < 0:
        raise SettingsError(
            "CHAT_DB_POOL_SIZE must be 1 or more and CHAT_DB_POOL_OVERFLOW 0 or more."
        )
    if settings.send_rate <= 0 or settings.send_burst < 1:
        raise SettingsError(
            "CHAT_SEND_RATE must be above 0 and CHAT_SEND_BURST 1 or more "
            f"(a zero rate would refuse every message), not {settings.send_rate} and "
            f"{settings.send_burst}."
        )
    if settings.frame_rate <= 0 or settings.frame_burst < 1:
        raise SettingsError(
            "CHAT_FRAME_RATE must be above 0 and CHAT_FRAME_BURST 1 or more "
            f"(a zero rate would refuse every frame), not {settings.frame_rate} and "
            f"{settings.frame_burst}."
        )
    if settings.gc_young_threshold < 1:
        raise SettingsError(
            "CHAT_GC_YOUNG_THRESHOLD must be 1 or more (0 would turn the cycle "
            f"collector off and leak every reference cycle), not {settings.gc_young_threshold}."
        )
    if not 0 <= settings.digest_hour <= 23:
        raise SettingsError("CHAT_DIGEST_HOUR must be an hour from 0 to 23.")
    if settings.reply_domain and not REPLY_DOMAIN.fullmatch(settings.reply_domain):
        raise SettingsError(
            "CHAT_REPLY_DOMAIN must be a domain name such as reply.example.com "
            "(letters, digits, hyphens and dots; no @, scheme or port)."
        )
    if not 1 <= settings.mail_in_port <= 65535:
        raise SettingsError(
            "CHAT_MAIL_IN_PORT (mail-in --port) must be a port from 1 to 65535, "
            f"not {settings.mail_in_port}."
        )
    if settings.mail_in_tls_key and not settings.mail_in_tls_cert:
        raise SettingsError(
            "CHAT_MAIL_IN_TLS_KEY is set without CHAT_MAIL_IN_TLS_CERT: set the "
            "certificate chain's PEM file too, or neither for plain SMTP."
        )
    if settings.mail_max_bytes < 64 * 1024:
        raise SettingsError(
            f"CHAT_MAIL_MAX_BYTES must be at least 65536 (64 KiB), not {settings.mail_max_bytes}."
        )
    if settings.uses_development_secret and not is_loopback(settings.mail_in_host):
        # Reply addresses are signed with it: anyone could make one up
        # and post as anybody.
        raise SettingsError(
            "CHAT_SECRET_KEYS must be set to a random secret when mail-in listens "
            f"beyond this machine (--host {settings.mail_in_host}); the development secret "
            "is accepted only with a loopback --host."
        )
