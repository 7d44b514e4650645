"""Where emails go: a real SMTP server, or .eml files in the outbox folder.

`CHAT_SMTP_URL` picks the transport. Its forms:

- `smtp://user:pass@host:587` — plain connection, upgraded with STARTTLS
  when the server offers it;
- `smtp+starttls://user:pass@host:587` — STARTTLS required (refuses to send
  in clear text);
- `smtps://user:pass@host:465` — implicit TLS from the first byte.

User and password are optional and percent-decoded. With no URL, each email
is written to `CHAT_OUTBOX_DIR` as `<date>-<hash of key>.eml`; writing the
same email again replaces the file, so the outbox never shows a duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from chatserver.settings import Settings, SettingsError

# A whole SMTP conversation normally takes well under a second; 30 s rides
# out a slow server while keeping a dead one from holding an email (and, on
# PostgreSQL, its row lock) for long.
SMTP_TIMEOUT_SECONDS = 30.0
DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
# "421 Service not available": the server is closing; every email would fail.
SERVICE_NOT_AVAILABLE = 421


class DeliveryError(Exception):
    """Sending failed. `permanent` failures (5xx answers) are not retried;
    `server_down` ones (no connection, a timeout, 421) would fail for every
    email, so the pass stops sending until the next one."""

    def __init__(self, message: str, *, permanent: bool = False, server_down: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.server_down = server_down


class Transport(Protocol):
    async def deliver(self, message: EmailMessage) -> None: ...


class SmtpTransport:
    """One SMTP connection per email: simple, and nothing to go stale between
    the seconds-apart batches of a notifier."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise SettingsError(
                "CHAT_SMTP_URL must look like smtp://user:pass@host:port "
                "(or smtp+starttls:// or smtps://)."
            )
        self.hostname = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.use_tls = parts.scheme == "smtps"
        # None lets aiosmtplib upgrade when the server offers STARTTLS.
        self.start_tls: bool | None = True if parts.scheme == "smtp+starttls" else None
        if self.use_tls:
            self.start_tls = False

    async def deliver(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            raise DeliveryError(str(exc), permanent=all(c >= 500 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{exc.code} {exc.message}",
                permanent=exc.code >= 500,
                server_down=exc.code == SERVICE_NOT_AVAILABLE,
            ) from exc
        except (
            TimeoutError,
            OSError,
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
        ) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", server_down=True) from exc
        except aiosmtplib.SMTPException as exc:
            # About this message (a feature it needs that the server lacks).
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


class OutboxTransport:
    """Writes each email as an .eml file for the local mailbox page."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, message: EmailMessage) -> Path:
        key = hashlib.sha256(str(message["Message-ID"]).encode()).hexdigest()[:16]
        date = message["Date"].datetime
        return self.folder / f"{date:%Y%m%dT%H%M%S}-{key}.eml"

    async def deliver(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise DeliveryError(f"writing to the outbox failed: {exc}", server_down=True) from exc

    def _write(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path_for(message)
        partial = path.with_suffix(".tmp")
        partial.write_bytes(message.as_bytes(policy=SMTP_POLICY))
        # Rename is atomic: the mailbox page never lists half a file.
        os.replace(partial, path)


def transport_from_settings(settings: Settings) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url)
    return OutboxTransport(settings.outbox_dir)
