"""A reply address: whose it is and whether its bindings still hold
(step 1 of `chat/email_replies.py`), and which reply addresses a mail
names when the webhook has no envelope."""

from __future__ import annotations

from dataclasses import dataclass
from email.errors import HeaderParseError, MessageError
from email.message import EmailMessage

from chatserver.chat import access
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.chat.reply_tokens import ReplyTokens, no_such_address
from chatserver.chat.service import Chat
from chatserver.chat.signing import LINK_TIME_PRECISION
from chatserver.store import contexts, conversations, people, reply_addresses


@dataclass(frozen=True)
class Author:
    """Who a verified reply address speaks for, and where."""

    viewer: Viewer
    email: str
    conversation_id: str
    application_id: str


def tokens(chat: Chat) -> ReplyTokens:
    return ReplyTokens(chat.settings, chat.clock)


def is_reply_address(chat: Chat, address: str) -> bool:
    return tokens(chat).is_ours(address)


async def resolve(chat: Chat, address: str) -> Author:
    """The person and conversation a reply address speaks for, if its token
    verifies and its bindings still hold; `not_found` otherwise."""
    if not chat.settings.reply_domain:
        raise no_such_address("Reply by email is not enabled.")
    token = tokens(chat).read(address)
    gone = no_such_address("This reply address is no longer valid.")
    async with chat.db.transaction() as conn:
        row = await reply_addresses.get(conn, token.address_id)
        if row is None:
            raise gone
        ctx = await contexts.load(conn, row["conversation_id"])
        if ctx is None:
            raise gone
        kind, person_id = row["person_kind"], row["person_id"]
        if kind == Role.STAFF.value:
            person = await people.get_staff(conn, person_id)
            if (
                person is None
                or person["removed_at"] is not None
                or person["org_id"] != ctx.org_id
                or int(person["session_generation"]) != token.generation
            ):
                raise gone
            viewer = Viewer(
                Role.STAFF, person_id, person["name"], person["timezone"], org_id=ctx.org_id
            )
        else:
            person = await people.get_candidate(conn, person_id)
            binding = await conversations.application_link_binding(conn, ctx.application_id)
            if person is None or not access.candidate_holds(
                binding, person_id, token.signed_at, LINK_TIME_PRECISION
            ):
                raise gone
            viewer = Viewer(
                Role.CANDIDATE,
                person_id,
                person["name"],
                person["timezone"],
                application_ids=(ctx.application_id,),
            )
    return Author(viewer, str(person["email"]), ctx.id, ctx.application_id)


# Where a reply address may appear in a mail forwarded by a provider, the
# most exact first (the envelope recipient, when the provider records it).
RECIPIENT_HEADERS = (
    "X-Original-To",
    "Delivered-To",
    "Envelope-To",
    "X-Envelope-To",
    "To",
    "Cc",
)


def recipients(chat: Chat, mail: EmailMessage) -> list[str]:
    """The reply addresses a mail names (for the webhook, which has no
    envelope), in the order of RECIPIENT_HEADERS, each once."""
    found: list[str] = []
    for name in RECIPIENT_HEADERS:
        try:
            values = mail.get_all(name) or []
        except (HeaderParseError, MessageError, ValueError, IndexError, TypeError):
            continue
        for value in values:
            try:
                addresses = [a.addr_spec for a in value.addresses]
            except (AttributeError, HeaderParseError, ValueError, IndexError, TypeError):
                addresses = str(value).replace(",", " ").split()
            for address in addresses:
                address = address.strip().strip("<>")
                if is_reply_address(chat, address) and address.lower() not in {
                    f.lower() for f in found
                }:
                    found.append(address)
    return found
