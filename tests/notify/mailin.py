"""Helpers for the reply-by-email tests: replies as mail programs write
them, and `chatserver mail-in` on a loopback port (in the test's process on
the embedded default, a real `python -m chatserver mail-in` process against
PostgreSQL and Redis on the production path)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib

from chatserver.mail_in import MailIn, tls_context
from chatserver.settings import Settings
from scripts.load.processes import free_port
from tests.notify.conftest import subject
from tests.waits import eventually_async

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

QUOTE_HEADER = "On Mon, 2 Nov 2026 at 09:30, Acme via chatserver <chat@localhost> wrote:"


def reply(
    original: EmailMessage,
    text: str,
    *,
    sender: str | None = None,
    to: str | None = None,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
    files: Sequence[tuple[str, bytes, str]] = (),
) -> EmailMessage:
    """A reply to `original` from its recipient, to its Reply-To, quoting it
    the way Gmail does below the new text."""
    message = EmailMessage()
    message["From"] = sender or str(original["To"])
    message["To"] = to or str(original["Reply-To"])
    message["Subject"] = "Re: " + subject(original)
    message["Message-ID"] = message_id or make_msgid(domain="mail.example")
    message["In-Reply-To"] = str(original["Message-ID"])
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, data, content_type in files:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def gmail_body(new: str, quoted: str = "Could you come in on Tuesday?") -> str:
    return f"{new}\n\n{QUOTE_HEADER}\n\n> {quoted}\n>\n> Alice\n"


def reply_address(original: EmailMessage) -> str:
    value = original["Reply-To"]
    assert value is not None, "the email carries no Reply-To"
    return str(value.addresses[0].addr_spec)


async def deliver(
    port: int,
    message: EmailMessage,
    *,
    sender: str | None = None,
    to: Sequence[str] = (),
    start_tls: bool | None = None,
) -> tuple[dict[str, Any], str]:
    """Send over SMTP to mail-in; (per-recipient answers, the DATA answer).
    `start_tls`: aiosmtplib's (None: when the server offers it)."""
    answers, text = await aiosmtplib.send(
        message,
        hostname="127.0.0.1",
        port=port,
        sender=sender,
        recipients=list(to) or None,
        timeout=30,
        start_tls=start_tls,
    )
    return dict(answers), str(text)


@dataclass
class MailInServer:
    port: int


def self_signed(folder: Path, cert: str = "cert.pem", key: str = "key.pem") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl CLI: what
    an operator gives mail-in, and what a test client can verify."""
    cert_path, key_path = folder / cert, folder / key
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key_path), "-out", str(cert_path),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert_path, key_path


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.asynccontextmanager
async def running_mail_in(
    app: Any, settings: Settings, log_dir: Path, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[MailInServer]:
    """mail-in on a free loopback port, for as long as the block runs;
    offering STARTTLS with `tls` (certificate, key)."""
    if tls is not None:
        settings = settings.with_(mail_in_tls_cert=str(tls[0]), mail_in_tls_key=str(tls[1]))
    if settings.embedded:
        server = MailIn(app.state.services.chat, tls_context(settings))
        port = await server.start("127.0.0.1", 0)
        try:
            yield MailInServer(port)
        finally:
            await server.stop()
        return
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        CHAT_REDIS_PREFIX=settings.redis_prefix,
        CHAT_SECRET_KEYS=",".join(settings.secret_keys),
        CHAT_REPLY_DOMAIN=settings.reply_domain,
        CHAT_MAIL_MAX_BYTES=str(settings.mail_max_bytes),
        CHAT_MAIL_IN_TLS_CERT=settings.mail_in_tls_cert,
        CHAT_MAIL_IN_TLS_KEY=settings.mail_in_tls_key,
        CHAT_BASE_URL=settings.base_url,
        CHAT_SEND_RATE="1000",
        CHAT_SEND_BURST="1000",
        PYTHONPATH=str(REPO),
    )
    log_path = log_dir / f"mail-in-{port}.log"
    process = _spawn(env, port, log_path)

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"mail-in did not start:\n{log_path.read_text()}")
        return _listening(port)

    try:
        await eventually_async(
            listening,
            within=START_TIMEOUT,
            what=lambda: f"mail-in listening:\n{log_path.read_text()}",
        )
        yield MailInServer(port)
    finally:
        _stop(process)


def _spawn(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "chatserver", "mail-in", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (mail-in finishes the mail in hand), SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
