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
from email.header import Header
from email.headerregistry import (
    Address,
    BaseHeader,
    HeaderRegistry,
    UniqueAddressHeader,
    UnstructuredHeader,
)
from email.message import EmailMessage
from email.policy import Policy
from email.policy import default as DEFAULT_POLICY
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Any, cast

from chatserver.settings import Settings

# Names in headers: display text only, at most this long.
NAME_CHARS = 200
# Control characters (C0, C1), line and paragraph separators: nothing a
# display name needs, and CR/LF would end a header.
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
DEFAULT_PRODUCT = "chatserver"
# RFC 5322's limit on a line, the most a header may take unfolded.
MAX_LINE_CHARS = 998
# How an RFC 2047 encoded word starts: in a name it is text, never decoded.
ENCODED_WORD_START = "=?"
# What a display name cannot hold inside quotes: a quote or a backslash.
QUOTE_UNSAFE = re.compile(r'["\\]')
# A display name written as it is: words of RFC 5322 atext and spaces.
PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class WholeLineHeader(UnstructuredHeader, BaseHeader):
    """A header written on one line when it fits in MAX_LINE_CHARS.

    Python folds an unstructured header at 78 characters, and a word longer
    than that (a URL with its token) it RFC 2047-encodes into `=?utf-8?q?…?=`
    pieces, which no mail program reads as a URL. `List-Unsubscribe` must
    arrive as the raw `<https://…>` (RFC 8058), so it is folded with the
    998-character line limit whatever the policy serializing the message:
    the header object folds itself, so this holds for the outbox's
    `as_bytes` and for aiosmtplib's own serializer alike.
    """

    def fold(self, *, policy: Policy) -> str:
        return super().fold(policy=policy.clone(max_line_length=MAX_LINE_CHARS))


class EncodedSubjectHeader(UnstructuredHeader, BaseHeader):
    """A non-ASCII Subject as RFC 2047 encoded words from end to end.

    Python's own folding encodes only the non-ASCII words, and where two of
    them meet it puts the space between them outside the encoded words,
    where RFC 2047 says a reader drops it: a job title with an en dash
    before a name ("Maths, dash, Zoë's class") arrives with the space after
    the dash gone. Encoding the whole value keeps every space inside an
    encoded word. An ASCII subject (or a policy allowing UTF-8 headers)
    folds as usual.

    Text that looks like an encoded word (`=?utf-8?b?4oCu?=` in a name) is
    kept as the text it is: Python decoded it when the header was set, so a
    name could bring in what names may not hold (a bidi override), and a
    reader would decode it too; it is encoded whole like non-ASCII text.
    """

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        super().parse(value, kwds)
        if ENCODED_WORD_START in value:
            kwds["decoded"] = value

    def fold(self, *, policy: Policy) -> str:
        literal = ENCODED_WORD_START in str(self)
        if not literal and (str(self).isascii() or getattr(policy, "utf8", False)):
            return super().fold(policy=policy)
        encoded = Header(str(self), "utf-8", header_name=self.name).encode(
            linesep=policy.linesep, maxlinelen=policy.max_line_length
        )
        return f"{self.name}: {encoded}{policy.linesep}"


class MailboxHeader(UniqueAddressHeader):
    """`From` and `To` as one line when they fit: a display name of plain
    words as it is, else quoted, and RFC 2047 encoded words from end to end
    for a name that is not ASCII, would need folding, or holds a quote, a
    backslash or what a reader could take for an encoded word (`=?`).

    Python quotes a display name such as `Rita <rita@evil.example>, x`, but
    when the header is too long for one line its folding drops the quotes
    (and writes encoded words inside them decoded), so the bytes that went
    out said `To: Rita <rita@evil.example>, x … <rita@mail.example>`: two
    mailboxes to every mail program, the first the name's, and Reply All
    wrote to it. An encoded word is only ever display text (RFC 2047,
    section 5), so nothing in a name can become an address.
    """

    name: str  # BaseHeader's, which the registry mixes in

    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        """`Name <address>` read as written: Python's own parser decodes
        encoded words in a display name, so a name holding the text
        `=?utf-8?q?=0A?=` became a line break and failed every email to its
        person (and `=?utf-8?b?4oCu?=` a bidi override, which names may not
        hold). Kept as text, it is encoded whole when folded."""
        if isinstance(value, str):
            pairs = getaddresses([value])
            if pairs and all(spec for _, spec in pairs):
                value = [Address(display_name=name, addr_spec=spec) for name, spec in pairs]
        super().parse(value, kwds)

    def fold(self, *, policy: Policy) -> str:
        # Mailboxes only: these headers never carry a group (`name: …;`).
        limit = policy.max_line_length or MAX_LINE_CHARS
        lines = [f"{self.name}:"]
        for index, address in enumerate(self.addresses):
            separator = "," if index < len(self.addresses) - 1 else ""
            spec = f"<{address.addr_spec}>{separator}"
            name = address.display_name
            quoted = f'"{name}"'
            # A name holding what a reader could take for an encoded word
            # is encoded whole, whether plain or quotable otherwise.
            literal = ENCODED_WORD_START in name
            if not name:
                words = []
            elif PLAIN_NAME.fullmatch(name) and not literal:
                words = name.split(" ")
            elif (
                name.isascii()
                and not literal
                and not QUOTE_UNSAFE.search(name)
                and len(lines[-1]) + len(quoted) + len(spec) + 2 <= limit
            ):
                words = [quoted]
            else:
                encoded = Header(name, "utf-8", header_name=self.name).encode(
                    linesep="\n", maxlinelen=limit
                )
                words = encoded.split()
            for word in [*words, spec]:
                if len(lines[-1]) + 1 + len(word) > limit and lines[-1].strip():
                    lines.append("")
                lines[-1] += f" {word}"
        return policy.linesep.join(lines) + policy.linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", WholeLineHeader)
_HEADERS.map_to_type("subject", EncodedSubjectHeader)
# The registry mixes BaseHeader in itself (typeshed's BaseHeader and
# AddressHeader disagree on `init`, so the class cannot name both).
_HEADERS.map_to_type("from", cast("type[BaseHeader]", MailboxHeader))
_HEADERS.map_to_type("to", cast("type[BaseHeader]", MailboxHeader))
# The default policy, with these headers' folding.
MESSAGE_POLICY = DEFAULT_POLICY.clone(header_factory=_HEADERS)


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
    # What the email told its reader about: (conversation, last seq) pairs,
    # recorded as their email cursors once it is sent, so that a reply to it
    # marks those messages read. Planning moves the cursor of a messages
    # email; a digest's list is known only when it is composed.
    covers: tuple[tuple[str, int], ...] = ()

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
    unsubscribe headers (List-Unsubscribe unfolded, see WholeLineHeader)."""
    name, address = sender(settings, None)
    msg = EmailMessage(policy=MESSAGE_POLICY)
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
