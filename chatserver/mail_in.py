"""`chatserver mail-in`: the SMTP server that takes replies to notification
emails (the mail exchanger of CHAT_REPLY_DOMAIN, or the next hop of one).

A transport, like `web/`: it speaks SMTP and hands each accepted mail to
`chat.email_replies.take_reply`, the same function the webhook calls.

- `RCPT TO` is refused (550) for anything but a valid reply address, so
  nothing else is ever taken in, and a forged, expired, rotated-out or
  revoked address never gets as far as `DATA`.
- The size limit (`CHAT_MAIL_MAX_BYTES`) is announced in `EHLO` (SIZE),
  refused at `MAIL FROM` when declared larger, and otherwise refused with
  `552 5.3.4` in answer to `DATA`, never accepted first; aiosmtpd stops
  storing a body once it is over the limit.
- STARTTLS is offered when CHAT_MAIL_IN_TLS_CERT names a certificate
  (opportunistic, as between mail servers: a sender that does not ask
  still delivers in plain).
- `DATA` is answered after the reply is committed (or refused): 250 means
  the message is stored, or was dropped as automatic, or the person was
  emailed why it was not posted. A temporary failure (rate limit, database
  down) answers 451, so the sending server tries again later; the
  Message-ID makes that retry harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from dataclasses import dataclass
from typing import AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from chatserver.broker import broker_from_url
from chatserver.chat import email_replies, reply_address
from chatserver.chat.email_replies import Outcome
from chatserver.chat.events import Events
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode
from chatserver.ops.stats import reporting
from chatserver.settings import Settings
from chatserver.store.db import Database

log = logging.getLogger(__name__)

# A reply goes to one address; a few more (Cc to oneself, two
# conversations) are fine, a long list is not a reply.
MAX_RECIPIENTS = 10
# How long an idle SMTP client may hold a connection.
IDLE_SECONDS = 120
IDENT = "chatserver mail-in"

# How aiosmtpd's own size refusals begin (MailInSMTP rewrites them).
AIOSMTPD_TOO_BIG = "552 Error:"

OK = "250 2.0.0 OK"
EXPLAINED = "250 2.0.0 Not posted: the reason was sent to you by email"
SMTP_ANSWERS = {
    ErrorCode.NOT_FOUND: "550 5.1.1",
    ErrorCode.FORBIDDEN: "550 5.7.1",
    ErrorCode.UNAUTHORIZED: "550 5.7.1",
    ErrorCode.INVALID: "550 5.6.0",
    ErrorCode.TOO_LARGE: "552 5.3.4",
    ErrorCode.RATE_LIMITED: "451 4.7.1",
    ErrorCode.UNAVAILABLE: "451 4.3.0",
}


def answer(exc: ChatError) -> str:
    """An SMTP reply line for a refusal: one line of ASCII."""
    code = SMTP_ANSWERS.get(exc.code, "451 4.3.0")
    text = " ".join(exc.message.split()).encode("ascii", "replace").decode()
    return f"{code} {text}"


class ReplyHandler:
    """aiosmtpd handler: reply addresses only, each mail to `take_reply`."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            await reply_address.resolve(self.chat, address)
        except ChatError as exc:
            return answer(exc)
        except Exception:
            log.exception("checking a reply address failed")
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if not isinstance(raw, bytes):
            return "554 5.6.0 No message"
        sender = envelope.mail_from if isinstance(envelope.mail_from, str) else None
        if not envelope.rcpt_tos:
            return "554 5.5.1 No valid recipients"
        try:
            result = await email_replies.take_mail(self.chat, raw, list(envelope.rcpt_tos), sender)
        except ChatError as exc:
            return answer(exc)
        except Exception:
            log.exception("taking a reply by email failed")
            return "451 4.3.0 Try again later"
        return EXPLAINED if result.outcome is Outcome.EXPLAINED else OK


class MailInSMTP(SMTP):
    """aiosmtpd's SMTP server, with its size refusals answered as documented.

    aiosmtpd refuses a mail over `data_size_limit` itself, at `MAIL FROM`
    (a larger SIZE) and at the end of `DATA`, with "552 Error: …" and no
    enhanced status code; the sending server's bounce then tells the person
    nothing. Every 552 it writes gets RFC 3463's 5.3.4 (message too big)
    and the limit in words."""

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status.startswith(AIOSMTPD_TOO_BIG):
            limit = self.data_size_limit or 0
            status = f"552 5.3.4 A reply by email is at most {limit} bytes"
        await super().push(status)


class CannotListen(Exception):
    """mail-in could not take its address (in use, not ours) or use its
    certificate: one line."""


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """What STARTTLS serves: CHAT_MAIL_IN_TLS_CERT and _KEY, read at start so
    a wrong file stops mail-in with one line rather than failing senders'
    handshakes later; None (plain SMTP only) without a certificate."""
    if not settings.mail_in_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.mail_in_tls_cert, settings.mail_in_tls_key or None)
    except ssl.SSLError as exc:
        reason = (
            "the key does not match the certificate"
            if exc.reason == "KEY_VALUES_MISMATCH"
            else "not a PEM certificate chain and private key"
        )
        raise _unusable_certificate(settings, reason) from None
    except OSError as exc:
        raise _unusable_certificate(settings, os.strerror(exc.errno or 0)) from None
    return context


def _unusable_certificate(settings: Settings, reason: str) -> CannotListen:
    files = (
        f"CHAT_MAIL_IN_TLS_CERT={settings.mail_in_tls_cert}, "
        f"CHAT_MAIL_IN_TLS_KEY={settings.mail_in_tls_key or '(unset)'}"
    )
    return CannotListen(
        f"mail-in cannot use its TLS certificate ({reason}; {files}): the first must name "
        "a PEM certificate chain and the second its private key (unset when the key is "
        "in the certificate's file)."
    )


@dataclass
class MailIn:
    """A listening SMTP server on `chat` (already started), offering
    STARTTLS with `tls` when given."""

    chat: Chat
    tls: ssl.SSLContext | None = None
    server: asyncio.Server | None = None

    def protocol(self) -> SMTP:
        settings = self.chat.settings
        return MailInSMTP(
            ReplyHandler(self.chat),
            data_size_limit=settings.mail_max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.reply_domain or None,
            ident=IDENT,
            timeout=IDLE_SECONDS,
            tls_context=self.tls,
            require_starttls=False,
        )

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: a free port); the port listened on."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.protocol, host=host, port=port)
        sockets = self.server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def run_standalone(settings: Settings) -> None:
    """`chatserver mail-in` on `mail_in_host`:`mail_in_port`, until SIGTERM
    or SIGINT."""
    host, port = settings.mail_in_host, settings.mail_in_port
    tls = tls_context(settings)
    if not settings.redis_url:
        log.warning(
            "no REDIS_URL: replies are stored, but pages of a separate server "
            "see them only when they load the conversation again"
        )
    db = Database.from_settings(settings)
    broker = broker_from_url(settings.redis_url, prefix=settings.redis_prefix)
    await broker.connect()
    chat = Chat(settings, db, Events(broker))
    await chat.start()
    mail_in = MailIn(chat, tls)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        try:
            listening = await mail_in.start(host, port)
        except OSError as exc:
            # asyncio's own text repeats the address; the errno says it plainly.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise CannotListen(
                f"mail-in cannot listen on {host}:{port} ({reason}): "
                "stop what uses it, or set CHAT_MAIL_IN_PORT (mail-in --port)."
            ) from None
        log.info(
            "mail-in listening on %s:%d for *@%s (%s)",
            host,
            listening,
            settings.reply_domain,
            "STARTTLS offered" if tls else "plain SMTP",
        )
        # Listed on the ops page beside the web workers and notifiers.
        async with reporting(settings, "mail-in"):
            await stopping.wait()
    finally:
        await mail_in.stop()
        await chat.stop()
        await broker.disconnect()
        await db.dispose()
        log.info("mail-in stopped")
