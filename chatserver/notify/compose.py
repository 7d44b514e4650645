"""Rendering emails: Jinja2 templates to text and HTML, and the MIME message.

What goes into an email is fixed when it is planned (the text and HTML are
stored on its row), and the headers are derived from the row alone, so a
retried or resent email is the same email: same Message-ID, same Date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from chatserver.chat.formatting import preview
from chatserver.settings import Settings
from chatserver.web.auth import Signer

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Long enough to carry a sentence or two, short enough that the email asks
# the reader to open the conversation rather than replacing it.
PREVIEW_CHARS = 200
# RFC 5322 subjects should stay short; longer job titles are cut.
SUBJECT_CHARS = 300


@dataclass(frozen=True)
class Draft:
    """A rendered email before it is recorded."""

    to_address: str  # "Name <address>"
    subject: str
    text: str
    html: str


def zone(name: str | None) -> ZoneInfo:
    """The recipient's timezone; a bad stored value falls back to UTC."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def message_id(key: str, settings: Settings) -> str:
    """Stable per email key, so a resend in the crash window is recognisably
    the same message (mail clients and servers de-duplicate on it)."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def build_message(email: Mapping[Any, Any], settings: Settings) -> EmailMessage:
    """The MIME message of a recorded email: multipart text and HTML."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = email["to_address"]
    msg["Subject"] = email["subject"]
    msg["Date"] = format_datetime(email["created_at"])
    msg["Message-ID"] = message_id(email["key"], settings)
    msg["List-Unsubscribe"] = f"<{settings.base_url}/settings>"
    # Marks the mail as machine-sent, so auto-responders stay quiet (RFC 3834).
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(email["text_body"])
    msg.add_alternative(email["html_body"], subtype="html")
    return msg


class Composer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._signer = Signer(settings)
        self._env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def candidate_link(self, application_id: str, candidate_id: str) -> str:
        token = self._signer.candidate_link_token(application_id, candidate_id)
        return f"{self._settings.base_url}/auth/candidate?token={token}"

    def conversation_link(self, conversation_id: str) -> str:
        return f"{self._settings.base_url}/c/{conversation_id}"

    def messages_email(
        self,
        recipient_kind: str,
        recipient: Mapping[Any, Any],
        context: Mapping[Any, Any],
        messages: Sequence[Mapping[Any, Any]],
    ) -> Draft:
        """One email about unread messages in one conversation."""
        tz = zone(recipient["timezone"])
        items = [
            {
                "sender_name": m["sender_name"],
                "preview": preview(m["body"], PREVIEW_CHARS),
                "sent_at": _time(m["created_at"], tz),
            }
            for m in messages
        ]
        senders = list(dict.fromkeys(m["sender_name"] for m in messages))
        values = {
            "recipient_name": recipient["name"],
            "org_name": context["org_name"],
            "job_title": context["job_title"],
            "candidate_name": context["candidate_name"],
            "applied_on": _date(context["applied_at"], tz),
            "senders": " and ".join(senders) if len(senders) <= 2 else f"{senders[0]} and others",
            "messages": items,
        }
        count = len(items)
        if recipient_kind == "candidate":
            template = "candidate_messages"
            values["link"] = self.candidate_link(context["application_id"], recipient["id"])
            subject = (
                f"{senders[0]} at {context['org_name']} sent you a message about "
                f"{context['job_title']}"
                if count == 1
                else f"{count} new messages from {context['org_name']} about {context['job_title']}"
            )
        else:
            template = "staff_messages"
            values["link"] = self.conversation_link(context["id"])
            subject = (
                f"{context['candidate_name']} replied about {context['job_title']}"
                if count == 1
                else f"{context['candidate_name']} sent {count} messages about "
                f"{context['job_title']}"
            )
        return self._render(template, recipient, subject, values)

    def digest_email(
        self,
        recipient_kind: str,
        recipient: Mapping[Any, Any],
        items: Sequence[Mapping[Any, Any]],
        local_date: str,
        more: bool,
    ) -> Draft:
        """The daily digest: each conversation with unread messages."""
        rows = [
            {
                "title": item["candidate_name"] if recipient_kind == "staff" else item["job_title"],
                "job_title": item["job_title"],
                "unread": item["unread"],
                "preview": preview(item["last_body"], PREVIEW_CHARS),
                "link": (
                    self.conversation_link(item["id"])
                    if recipient_kind == "staff"
                    else self.candidate_link(item["application_id"], recipient["id"])
                ),
            }
            for item in items
        ]
        plural = "" if len(rows) == 1 else "s"
        subject = f"Daily summary: {len(rows)}{'+' if more else ''} conversation{plural} unread"
        values = {
            "recipient_name": recipient["name"],
            "local_date": local_date,
            "items": rows,
            "more": f"{self._settings.base_url}/inbox"
            if more and recipient_kind == "staff"
            else "",
        }
        return self._render("digest", recipient, subject, values)

    def _render(
        self, template: str, recipient: Mapping[Any, Any], subject: str, values: dict[str, Any]
    ) -> Draft:
        subject = " ".join(subject.split())[:SUBJECT_CHARS]
        values = {
            **values,
            "subject": subject,
            "settings_url": f"{self._settings.base_url}/settings",
        }
        return Draft(
            to_address=formataddr((recipient["name"], recipient["email"])),
            subject=subject,
            text=self._env.get_template(f"{template}.txt").render(values),
            html=self._env.get_template(f"{template}.html").render(values),
        )


# "2 November 2026" and "2 Nov 09:30": unambiguous in every locale.
def _date(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.day} {local:%B %Y}"


def _time(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.day} {local:%b %H:%M}"
