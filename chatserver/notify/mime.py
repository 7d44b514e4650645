"""From a composed email to the MIME message that goes out.

Names and addresses are whatever the host stored, so everything put into a
header is cleaned of control characters, and an address that is not exactly
one valid address raises here (failing that one email, never reaching
someone else). The headers that identify an email (Message-ID, Date) are
derived from its row alone, so a retried or resent email is recognisably
the same email.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from chatserver.settings import Settings

# Names in headers: display text only, at most this long.
NAME_CHARS = 200
# Control characters (C0, C1), line and paragraph separators: nothing a
# display name needs, and CR/LF would end a header.
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
DEFAULT_PRODUCT = "chatserver"


@dataclass(frozen=True)
class Draft:
    """A composed email, ready to become a MIME message."""

    from_name: str  # "Northfield Academy via chatserver"
    to_address: str  # "Name <address>"
    subject: str
    text: str
    html: str
    unsubscribe_url: str
    # A reply address (`reply+<token>@CHAT_REPLY_DOMAIN`): a reply to the
    # email is posted in the conversation. None without CHAT_REPLY_DOMAIN,
    # and on emails that must not be answered (a refused reply's notice).
    reply_to: str | None = None
    # RFC 3834: "auto-generated" for notifications, "auto-replied" for the
    # notice answering someone's email. Either keeps auto-responders quiet.
    auto_submitted: str = "auto-generated"

    def sent(self) -> dict[str, str]:
        """What is stored on the email's row once it went out."""
        return {
            "to_address": self.to_address,
            "subject": self.subject,
            "text_body": self.text,
            "html_body": self.html,
        }


def display(value: object) -> str:
    """A name as header and subject text: no control characters, one line,
    at most NAME_CHARS (NFC, so the same name always looks the same)."""
    text = unicodedata.normalize("NFC", str(value or ""))
    return " ".join(CONTROLS.sub(" ", text).split())[:NAME_CHARS]


def mailbox(name: object, address: str) -> str:
    """`Name <address>`, with an internationalised domain in its ASCII (IDNA)
    form. The address is used exactly as stored otherwise: one that is not a
    single valid address (two of them, CR/LF, a non-ASCII local part that
    would need SMTPUTF8) raises here and fails this one email rather than
    reaching someone else."""
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"not an email address: {address!r}")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    spec = f"{local}@{domain}"
    parsed = Address(display_name=display(name), addr_spec=spec)
    if parsed.addr_spec != spec:
        raise ValueError(f"not a single email address: {address!r}")
    return str(parsed)


def message_id(key: str, settings: Settings) -> str:
    """Stable per email key, so a resend in the crash window is recognisably
    the same message (mail clients and servers de-duplicate on it)."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def sender(settings: Settings, org_name: str | None) -> tuple[str, str]:
    """The From name and address: "<organisation> via <product>", so the
    reader sees who is writing to them, and whose service carries it."""
    product, address = parseaddr(settings.mail_from)
    product = display(product) or DEFAULT_PRODUCT
    org = display(org_name)
    return (f"{org} via {product}" if org else product), address or "chat@localhost"


def build_message(draft: Draft, key: str, created_at: datetime, settings: Settings) -> EmailMessage:
    """The MIME message: multipart text and HTML, with RFC 8058 one-click
    unsubscribe headers."""
    name, address = sender(settings, None)
    msg = EmailMessage()
    msg["From"] = Address(display_name=draft.from_name or name, addr_spec=address)
    msg["To"] = draft.to_address
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(created_at)
    msg["Message-ID"] = message_id(key, settings)
    msg["List-Unsubscribe"] = f"<{draft.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if draft.reply_to:
        msg["Reply-To"] = draft.reply_to
    # Marks the mail as machine-sent, so auto-responders stay quiet (RFC 3834).
    msg["Auto-Submitted"] = draft.auto_submitted
    msg.set_content(draft.text)
    msg.add_alternative(draft.html, subtype="html")
    return msg
