"""Reply by email: a raw RFC 822 reply becomes a message in the conversation.

Both ways in (`chatserver mail-in`, the SMTP server, and `POST
/api/v1/inbound-email`, the webhook) hand the mail to `take_reply`; this
module decides everything else (reading the mail is `reply_mail.py`'s), in
this order:

1. **The address** (`reply_address.resolve`): the reply token must
   verify (signature, 30 days, a key still listed) and its bindings still
   hold, as for links: a staff member not removed, of the conversation's
   organisation, with the session generation the token was signed under
   (sign-out and removal revoke it); a candidate still the application's
   candidate, the token signed after they were given it. Otherwise `not_found`.
2. **Automatic mail** (`reply_mail.automatic`) is dropped without an answer: bounces
   (null sender), `Auto-Submitted` other than `no`, `Precedence`
   bulk/junk/list/auto_reply, the auto-responder headers and subjects of
   the common mail programs, delivery and read reports. Two robots never
   talk to each other through us for long: whatever their language, a
   person's replies by email are bounded per conversation and hour
   (REPLIES_PER_WINDOW), and the refusal that ends a loop is an email
   nobody can answer into the conversation.
3. **Trust**: the token decides the conversation and the person; the
   `From` must also be that person's address (case-insensitive), or the
   mail is refused (`forbidden`) and logged without its content.
4. **Once per Message-ID**: the message's `client_id` is a UUID derived
   from the conversation and the Message-ID, so the send path's own
   idempotency makes a redelivered email return the original message.
5. **Content**: the text part (or the HTML part turned into text, never
   rendered), with quoted history and signature cut by `mail-parser-reply`
   and `>`-quoted lines dropped; attachments through the upload checks.
6. **The send** (`message_send.send_message`, `via="email"`): the same policy,
   limits and rate limit as any send, delivered live and counted.
7. **Read**: what emails had told the person about (up to their email
   cursor) counts as read, as answering in the app follows reading there.

A refusal the person can do something about (the policy, an attachment
that is not allowed, a reply too long) is answered with one polite email
(topic `reply_refused`, keyed by the reply's client_id so a redelivery
never sends a second one), never dropped in silence. Temporary failures
(`rate_limited`, `unavailable`) are raised, so the sending server retries.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from email.errors import MessageError
from email.message import EmailMessage
from enum import StrEnum
from io import BytesIO
from typing import Any

from chatserver.chat import message_send, reads, reply_mail, uploads, views
from chatserver.chat.reply_address import Author, recipients, resolve
from chatserver.chat.reply_tokens import no_such_address
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid
from chatserver.store import emails, messages, outbox

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    TAKEN = "taken"  # a new message
    DUPLICATE = "duplicate"  # this Message-ID was posted before: the original
    DROPPED = "dropped"  # automatic mail, dropped without an answer
    EXPLAINED = "explained"  # refused; the person was emailed why


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    message: dict[str, Any] | None = None
    # EXPLAINED: the refusal that was explained. DROPPED: why it is automatic.
    error: ChatError | None = None
    reason: str = ""


# -- taking a reply ----------------------------------------------------------------


# Refusals the person gets an email about: what they sent cannot be posted.
# The others are about the mail's origin (not_found, forbidden: nobody to
# tell), or temporary (rate_limited, unavailable: the sender retries).
EXPLAINED_CODES = frozenset(
    {ErrorCode.NOT_ALLOWED, ErrorCode.CONVERSATION_ENDED, ErrorCode.INVALID, ErrorCode.TOO_LARGE}
)

# What a reply with nothing to post is told: the usual cause is an answer
# written inside the quoted email, or none at all, and the app's own
# wording ("A message needs a body or an attachment") would not say so.
NOTHING_OF_ITS_OWN = (
    "Your reply had no text of its own (the quoted email is left out), so nothing "
    "was posted. Write your answer above the quoted email."
)


# A loop bound whatever the language: two auto-responders that set no
# header and use a subject nobody listed would answer each other's
# notification emails for ever, each answer posted and emailed. A person
# may post at most this many replies by email in one conversation within
# REPLY_WINDOW; the next is not posted and is explained by email (which
# has no reply address, so no responder can answer it into the
# conversation), so the other side is not emailed and the loop stops. A
# person answering by email writes fewer (each answers an email, which
# waits CHAT_NOTIFY_DELAY_SECONDS, 2 minutes by default), and the refused
# one is told, by email, to go on in the app, which takes any number.
# Ten: a brisk exchange by email stays whole; a loop, at one answer per
# notification delay, stops within about 20 minutes.
REPLIES_PER_WINDOW = 10
REPLY_WINDOW = timedelta(hours=1)
TOO_MANY_REPLIES = (
    f"You have replied by email {REPLIES_PER_WINDOW} times in this conversation in the "
    "last hour, so this reply was not posted (this stops two automatic responders "
    "from answering each other). Open the conversation to go on writing."
)


# Which refusal a mail sent to several reply addresses answers with: a
# temporary one (the sender retries, and what was posted is not posted
# twice), then a permanent one when nothing was posted.
TEMPORARY_CODES = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})


async def take_mail(
    chat: Chat,
    raw: bytes,
    to: list[str] | None = None,
    envelope_sender: str | None = None,
) -> Result:
    """Post a reply email: the one entry point of both ways in.

    `to` is the envelope's recipients (SMTP); without it (the webhook) the
    reply addresses named in the mail's headers. Each recipient is taken by
    `take_reply`; with several, the answer is a temporary refusal if any,
    else the first result that posted, else the first refusal.
    """
    if len(raw) > chat.settings.mail_max_bytes:
        raise ChatError(
            ErrorCode.TOO_LARGE,
            f"An email reply is at most {chat.settings.mail_max_bytes} bytes.",
        )
    if to is None:
        try:
            to = recipients(chat, reply_mail.parse(raw))
        except (MessageError, ValueError, TypeError, IndexError) as exc:
            raise invalid("This is not an email message.") from exc
    if not to:
        raise no_such_address("The email is not addressed to a reply address.")
    results: list[Result] = []
    errors: list[ChatError] = []
    for address in to:
        try:
            results.append(await take_reply(chat, raw, address, envelope_sender))
        except ChatError as exc:
            errors.append(exc)
    temporary = [e for e in errors if e.code in TEMPORARY_CODES]
    if temporary:
        raise temporary[0]
    posted = [r for r in results if r.outcome in (Outcome.TAKEN, Outcome.DUPLICATE)]
    if posted:
        return posted[0]
    if errors:
        raise errors[0]
    return results[0]


async def take_reply(
    chat: Chat, raw: bytes, recipient: str, envelope_sender: str | None = None
) -> Result:
    """Post one reply email sent to the reply address `recipient`.

    Raises `ChatError`: `not_found` (not a valid reply address),
    `forbidden` (From is not the address's person), `too_large` (the mail
    is over CHAT_MAIL_MAX_BYTES), `invalid` (not an email with one From),
    `rate_limited` or `unavailable` (try again later).
    """
    if len(raw) > chat.settings.mail_max_bytes:
        raise ChatError(
            ErrorCode.TOO_LARGE,
            f"An email reply is at most {chat.settings.mail_max_bytes} bytes.",
        )
    author = await resolve(chat, recipient)
    try:
        mail = reply_mail.parse(raw)
    except (MessageError, ValueError, TypeError, IndexError) as exc:
        raise invalid("This is not an email message.") from exc
    machine = reply_mail.automatic(mail, envelope_sender)
    if machine is not None:
        log.info(
            "dropped automatic mail to a reply address of conversation %s (%s)",
            author.conversation_id,
            machine,
        )
        return Result(Outcome.DROPPED, reason=machine)
    sender = reply_mail.sender_address(mail)
    if sender is None or sender != author.email.lower():
        # Logged without the content, nor the addresses: who it claimed to be
        # is the attacker's text, and the person's address is theirs.
        log.warning(
            "refused a reply to conversation %s for %s %s: From is not their address",
            author.conversation_id,
            author.viewer.kind.value,
            author.viewer.id,
        )
        raise ChatError(
            ErrorCode.FORBIDDEN, "Replies are accepted only from the address they were sent to."
        )
    client_id = reply_mail.client_id_for(author.conversation_id, reply_mail.message_id(mail, raw))
    original = await _already_posted(chat, author, client_id)
    if original is not None:
        return Result(Outcome.DUPLICATE, original)
    try:
        # Regular expressions over up to TEXT_SCANNED characters: off the
        # event loop.
        text = await asyncio.to_thread(reply_mail.reply_text, mail)
        await _check_reply_rate(chat, author)
        attachment_ids = await _store_attachments(chat, author, mail)
        if not message_send.has_content(text, attachment_ids):
            raise invalid(NOTHING_OF_ITS_OWN)
        sent = await message_send.send_message(
            chat,
            author.viewer,
            author.conversation_id,
            client_id,
            text,
            attachment_ids,
            via=views.VIA_EMAIL,
        )
    except ChatError as exc:
        if exc.code not in EXPLAINED_CODES:
            raise
        await _explain(chat, author, client_id, exc)
        return Result(Outcome.EXPLAINED, error=exc, reason=exc.message)
    outcome = Outcome.TAKEN if sent.created else Outcome.DUPLICATE
    if sent.created:
        await _read_what_was_emailed(chat, author, int(sent.message["seq"]))
    log.info(
        "reply by email %s in conversation %s (seq %s)",
        outcome.value,
        author.conversation_id,
        sent.message["seq"],
    )
    return Result(outcome, sent.message)


async def _read_what_was_emailed(chat: Chat, author: Author, reply_seq: int) -> None:
    """Someone who answers an email has read what it told them, as someone
    who answers in the app has read the conversation: the messages emailed
    to them (up to their email cursor) count as read, for their inbox, bell
    and digest, and the other side sees the receipt. What came after the
    last email stays unread."""
    async with chat.db.transaction() as conn:
        emailed = await emails.emailed_through(
            conn, author.conversation_id, author.viewer.kind.value, author.viewer.id
        )
    if emailed:
        await reads.mark_read(chat, author.viewer, author.conversation_id, min(emailed, reply_seq))


async def _check_reply_rate(chat: Chat, author: Author) -> None:
    """`not_allowed` once the person posted REPLIES_PER_WINDOW replies by
    email in this conversation within REPLY_WINDOW (the loop bound)."""
    since = chat.clock() - REPLY_WINDOW
    async with chat.db.transaction() as conn:
        recent = await messages.count_by_sender_via(
            conn,
            author.conversation_id,
            author.viewer.kind.value,
            author.viewer.id,
            views.VIA_EMAIL,
            since,
        )
    if recent >= REPLIES_PER_WINDOW:
        log.warning(
            "reply by email to conversation %s from %s %s not posted: %d replies by email "
            "within %s (a loop of automatic answers?)",
            author.conversation_id,
            author.viewer.kind.value,
            author.viewer.id,
            recent,
            REPLY_WINDOW,
        )
        raise ChatError(ErrorCode.NOT_ALLOWED, TOO_MANY_REPLIES)


async def _already_posted(chat: Chat, author: Author, client_id: str) -> dict[str, Any] | None:
    """The message a previous delivery of this mail made, checked before its
    attachments are stored again."""
    key = (author.viewer.kind.value, author.viewer.id, client_id)
    async with chat.db.transaction() as conn:
        row = (await messages.by_client_keys(conn, [key])).get(key)
        if row is None:
            return None
        files = await messages.attachments_for(conn, [row["id"]])
    return views.message(row, files.get(row["id"], []))


async def _store_attachments(chat: Chat, author: Author, mail: EmailMessage) -> list[str]:
    files = reply_mail.attachments(mail)
    limit = chat.settings.max_attachments_per_message
    if len(files) > limit:
        raise invalid(
            f"A message can carry at most {limit} attachments; this email has {len(files)}."
        )
    ids = []
    for file in files:
        try:
            stored = await uploads.store(
                chat, author.viewer, file.name, BytesIO(file.data), len(file.data)
            )
        except ChatError as exc:
            if exc.code not in EXPLAINED_CODES:
                raise
            refused = f"The attachment {file.name!r} was refused: {exc.message}"
            raise ChatError(exc.code, refused) from exc
        ids.append(str(stored["id"]))
    return ids


async def _explain(chat: Chat, author: Author, client_id: str, refusal: ChatError) -> None:
    """Record the one email that tells the person why their reply was not
    posted (sent by the notifier like any email: once, with retries)."""
    now = chat.clock()
    kind, person_id = author.viewer.kind.value, author.viewer.id
    about = {
        "key": f"refused:{client_id}:{kind}:{person_id}",
        "topic": emails.REPLY_REFUSED,
        "conversation_id": author.conversation_id,
        "reason": refusal.message[: outbox.ERROR_CHARS],
    }
    async with chat.db.transaction() as conn:
        recorded = await outbox.record(conn, about, kind, person_id, now)
    log.info(
        "reply by email to conversation %s not posted (%s); %s",
        author.conversation_id,
        refusal.code.value,
        "explained by email" if recorded else "already explained",
    )
