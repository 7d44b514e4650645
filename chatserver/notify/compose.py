"""Composing emails: what a recorded email says, read when it is sent.

Planning records only what an email is about (see `planner.py`); the text
is composed here when the email is sent, from what is still there: a
message deleted for everyone since, or read since, is not in it, and an
email with nothing left to say is not sent at all. Whatever cannot be
composed fails this one email (recorded on its row by the sender), never
the others; the MIME message and its headers are `mime.py`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat.formatting import preview
from chatserver.chat.policy import can_send
from chatserver.chat.reply_tokens import ReplyTokens
from chatserver.chat.signing import Signer
from chatserver.chat.views import facts
from chatserver.clock import Clock, utcnow
from chatserver.notify.mime import Draft, display, mailbox, sender
from chatserver.notify.unsubscribe import Recipient, UnsubscribeLinks
from chatserver.roles import Role
from chatserver.settings import Settings
from chatserver.store import attachments, contexts, emails, people, reply_addresses
from chatserver.store.contexts import ConversationContext, SendContext
from chatserver.store.emails import DIGEST, REPLY_REFUSED, Mentioned

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Long enough to carry a sentence or two, short enough that the email asks
# the reader to open the conversation rather than replacing it.
PREVIEW_CHARS = 200
# RFC 5322 subjects should stay short; longer job titles are cut.
SUBJECT_CHARS = 300
# An email about many messages shows the latest few and says how many
# more there are: 75 previews would bury the link that matters.
MESSAGES_SHOWN = 5
# A digest lists at most this many conversations; more is a link to the inbox.
DIGEST_ITEMS = 50
# Messages older than this are never emailed about (the planner's horizon).
LOOKBACK = timedelta(days=7)
# Before a message's file names in a preview, as in the inbox ("📎 cv.pdf").
FILES_MARK = "\N{PAPERCLIP}"


def zone(name: str | None) -> ZoneInfo:
    """The recipient's timezone; a bad stored value falls back to UTC."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class Composer:
    def __init__(self, settings: Settings, clock: Clock = utcnow) -> None:
        self._settings = settings
        self._signer = Signer(settings)
        self._replies = ReplyTokens(settings, clock)
        self._clock = clock
        self._unsubscribe = UnsubscribeLinks(settings)
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

    async def reply_address(
        self, conn: AsyncConnection, kind: str, recipient: Mapping[Any, Any], conversation_id: str
    ) -> str | None:
        """The recipient's reply address in the conversation (None without
        CHAT_REPLY_DOMAIN): bound to them, the conversation and, for staff,
        their session generation (sign-out and removal revoke it)."""
        if not self._replies.enabled:
            return None
        address_id = await reply_addresses.ensure(
            conn, kind, str(recipient["id"]), conversation_id, self._clock()
        )
        generation = int(recipient["session_generation"]) if kind == Role.STAFF else 0
        return self._replies.address(address_id, generation)

    async def compose(
        self, conn: AsyncConnection, email: Mapping[Any, Any], now: datetime
    ) -> Draft | None:
        """The email as it should go out now, or None when there is nothing
        left to say (read, deleted, or its recipient turned emails off)."""
        kind, person_id = email["recipient_kind"], email["recipient_id"]
        recipient = await _person(conn, kind, person_id)
        if recipient is None:
            return None
        if kind == Role.STAFF and recipient["removed_at"] is not None:
            # The host removed them (DELETE /api/v1/staff) after the email
            # was planned: they left, and the conversation's words with them
            # would leave too.
            return None
        if email["topic"] == REPLY_REFUSED:
            # The answer to an email the person just sent: not a
            # notification, so it goes out whatever their setting.
            context = await contexts.load(conn, email["conversation_id"])
            if context is None:
                return None
            return self.refusal_email(kind, recipient, context, str(email["reason"] or ""))
        if recipient["email_notifications"] == "off":
            return None
        if email["topic"] == DIGEST:
            items = await emails.digest_items(
                conn, kind, person_id, now - LOOKBACK, DIGEST_ITEMS + 1
            )
            if not items:
                return None
            names = await attachments.file_names(
                conn, [(item["id"], item["last_seq"]) for item in items]
            )
            items = [
                {**item, "last_files": names.get((item["id"], item["last_seq"]), [])}
                for item in items
            ]
            local_date = email["local_date"] or now.astimezone(zone(recipient["timezone"])).date()
            # A reply can go to one conversation only: a digest of one
            # conversation can be answered, a digest of several cannot.
            # And only where the reader may send now.
            reply_to = None
            if len(items) == 1:
                only = await contexts.load(conn, items[0]["id"])
                if only is not None and may_send(kind, only):
                    reply_to = await self.reply_address(conn, kind, recipient, only.id)
            listed = items[:DIGEST_ITEMS]
            draft = self.digest_email(
                kind,
                recipient,
                listed,
                str(local_date),
                len(items) > DIGEST_ITEMS,
                reply_to=reply_to,
            )
            # What it lists counts as emailed, as a messages email's range
            # does: a reply to the digest reads it (email_replies.py).
            return replace(draft, covers=tuple((str(i["id"]), int(i["last_seq"])) for i in listed))
        context = await contexts.load(conn, email["conversation_id"])
        if context is None:
            return None
        position = await emails.read_position(conn, context.id, kind, person_id)
        found = await emails.mentioned(
            conn,
            context.id,
            Role.CANDIDATE if kind == Role.STAFF else Role.STAFF,
            max(int(email["after_seq"]), position),
            int(email["last_seq"]),
            MESSAGES_SHOWN,
        )
        if not found.count:
            return None
        reply_to = None
        if may_send(kind, context):
            reply_to = await self.reply_address(conn, kind, recipient, context.id)
        names = await attachments.file_names(
            conn, [(context.id, int(m["seq"])) for m in found.latest]
        )
        files = {seq: found_names for (_, seq), found_names in names.items()}
        return self.messages_email(kind, recipient, context, found, reply_to=reply_to, files=files)

    def messages_email(
        self,
        recipient_kind: str,
        recipient: Mapping[Any, Any],
        context: ConversationContext,
        found: Mentioned,
        *,
        reply_to: str | None = None,
        files: Mapping[int, Sequence[str]] | None = None,
    ) -> Draft:
        """One email about unread messages in one conversation: the latest
        MESSAGES_SHOWN of them, and how many more. `files`: the names of
        each message's files, by seq. Where the recipient may not send now
        (the send rule, `may_send`), the email invites no reply: "View the
        conversation", and no reply address."""
        tz = zone(recipient["timezone"])
        files = files or {}
        items = [
            {
                "sender_name": display(m["sender_name"]),
                "preview": preview(m["body"], PREVIEW_CHARS, for_email=True),
                "files": files_line(files.get(int(m["seq"]), ())),
                "sent_at": _time(m["created_at"], tz),
            }
            for m in found.latest
        ]
        senders = [display(name) for name in found.sender_names] or ["Someone"]
        org_name, job_title = display(context.org_name), display(context.job_title)
        candidate_name = display(context.candidate_name)
        count = found.count
        values = {
            "recipient_name": display(recipient["name"]),
            "org_name": org_name,
            "job_title": job_title,
            "candidate_name": candidate_name,
            "applied_on": _date(context.applied_at, tz),
            "senders": " and ".join(senders) if len(senders) <= 2 else f"{senders[0]} and others",
            "messages": items,
            "count": count,
            "earlier": count - len(items),
        }
        if recipient_kind == Role.CANDIDATE:
            template = "candidate_messages"
            values["link"] = self.candidate_link(context.application_id, recipient["id"])
            subject = (
                f"{senders[0]} at {org_name} sent you a message about {job_title}"
                if count == 1
                else f"{count} new messages from {org_name} about {job_title}"
            )
        else:
            template = "staff_messages"
            values["link"] = self.conversation_link(context.id)
            # Named by who wrote them: usually the candidate, but the host
            # may have given the application to someone else since.
            subject = (
                f"{values['senders']} replied about {job_title}"
                if count == 1
                else f"{values['senders']} sent {count} messages about {job_title}"
            )
        values["may_reply"] = may_send(recipient_kind, context)
        if not values["may_reply"]:
            reply_to = None
        values["reply_to"] = reply_to or ""
        return self._render(
            template, recipient_kind, recipient, org_name, subject, values, reply_to=reply_to
        )

    def refusal_email(
        self,
        recipient_kind: str,
        recipient: Mapping[Any, Any],
        context: ConversationContext,
        reason: str,
    ) -> Draft:
        """Why a reply by email was not posted: one polite notice per reply
        email, with no reply address (an answer to it would go nowhere, and
        two robots answering each other must never loop)."""
        org_name, job_title = display(context.org_name), display(context.job_title)
        link = (
            self.candidate_link(context.application_id, recipient["id"])
            if recipient_kind == Role.CANDIDATE
            else self.conversation_link(context.id)
        )
        values = {
            "recipient_name": display(recipient["name"]),
            "org_name": org_name,
            "job_title": job_title,
            "candidate_name": display(context.candidate_name),
            "staff": recipient_kind == Role.STAFF,
            "reason": reason or "Your reply could not be posted.",
            "link": link,
        }
        subject = f"Your reply about {job_title} was not posted"
        draft = self._render("reply_refused", recipient_kind, recipient, org_name, subject, values)
        return replace(draft, auto_submitted="auto-replied")

    def digest_email(
        self,
        recipient_kind: str,
        recipient: Mapping[Any, Any],
        items: Sequence[Mapping[Any, Any]],
        local_date: str,
        more: bool,
        *,
        reply_to: str | None = None,
    ) -> Draft:
        """The daily digest: each conversation with unread messages."""
        # Staff know the organisation (their own): an entry is the candidate
        # and the job. A candidate's entry is the job and the organisation
        # it is with, which tells apart two schools' posts of the same name.
        staff = recipient_kind == Role.STAFF
        rows = [
            {
                "title": display(item["candidate_name"] if staff else item["job_title"]),
                "about": display(item["job_title"] if staff else item["org_name"]),
                "org_name": display(item["org_name"]),
                "unread": item["unread"],
                "preview": preview(item["last_body"], PREVIEW_CHARS, for_email=True),
                "files": files_line(item.get("last_files", ())),
                "link": (
                    self.conversation_link(item["id"])
                    if recipient_kind == Role.STAFF
                    else self.candidate_link(item["application_id"], recipient["id"])
                ),
            }
            for item in items
        ]
        plural = "" if len(rows) == 1 else "s"
        subject = f"Daily summary: {len(rows)}{'+' if more else ''} conversation{plural} unread"
        values = {
            "recipient_name": display(recipient["name"]),
            "local_date": _day(local_date),
            "items": rows,
            # More than DIGEST_ITEMS: the body says so, as the subject's "50+"
            # does, and shows the most recent (staff get their inbox's link).
            "over": more,
            "more": f"{self._settings.base_url}/inbox"
            if more and recipient_kind == Role.STAFF
            else "",
            "reply_to": reply_to or "",
        }
        # Staff hear from their organisation; a candidate's digest names the
        # organisation when every conversation in it is with the same one.
        orgs = {row["org_name"] for row in rows}
        org_name = recipient["org_name"] if recipient_kind == Role.STAFF else None
        if recipient_kind == Role.CANDIDATE and len(orgs) == 1:
            org_name = orgs.pop()
        return self._render(
            "digest", recipient_kind, recipient, org_name, subject, values, reply_to=reply_to
        )

    def _render(
        self,
        template: str,
        recipient_kind: str,
        recipient: Mapping[Any, Any],
        org_name: str | None,
        subject: str,
        values: dict[str, Any],
        *,
        reply_to: str | None = None,
    ) -> Draft:
        subject = display(" ".join(subject.split()))[:SUBJECT_CHARS]
        unsubscribe = self._unsubscribe.url(Recipient(recipient_kind, str(recipient["id"])))
        values = {**values, "subject": subject, "settings_url": unsubscribe}
        from_name, _ = sender(self._settings, org_name)
        return Draft(
            from_name=from_name,
            to_address=mailbox(recipient["name"], str(recipient["email"])),
            subject=subject,
            text=self._env.get_template(f"{template}.txt").render(values),
            html=self._env.get_template(f"{template}.html").render(values),
            unsubscribe_url=unsubscribe,
            reply_to=reply_to,
        )


def may_send(kind: str, context: SendContext) -> bool:
    """Whether the recipient may send in the conversation now: the send
    path's own rule, so an email invites a reply only where one is taken."""
    return can_send(Role(kind), facts(context))


def files_line(names: Sequence[str]) -> str:
    """A message's files as its preview shows them after its text (or
    alone, for a message that is only files): "📎 cv.pdf, letter.pdf"."""
    shown = [display(name) for name in names]
    return f"{FILES_MARK} {', '.join(shown)}" if shown else ""


async def _person(conn: AsyncConnection, kind: str, person_id: str) -> RowMapping | None:
    if kind == Role.CANDIDATE:
        return await people.get_candidate(conn, person_id)
    return await people.get_staff(conn, person_id)


# "2 November 2026" and "2 Nov 09:30 GMT": unambiguous in every locale.
def _date(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.day} {local:%B %Y}"


def _day(iso_date: str) -> str:
    """The digest's day as people write it ("Friday 4 December 2026"), not
    as the planner keys it (2026-12-04)."""
    day = date.fromisoformat(iso_date)
    return f"{day:%A} {day.day} {day:%B %Y}"


def _time(at: datetime, tz: ZoneInfo) -> str:
    """The day and clock, labelled with the zone so that the reader knows
    whose clock it is: its abbreviation then ("GMT", "EST", "IST"), or its
    name where the zone has none (tzdata writes "+04" for those)."""
    local = at.astimezone(tz)
    abbreviation = local.tzname() or ""
    label = abbreviation if abbreviation[:1].isalpha() else tz.key.replace("_", " ")
    return f"{local.day} {local:%b %H:%M} {label}"
