"""Redeeming signed links: whom a link signs in, and where it leads.

The signature is checked by `chat/signing.py`; what a valid signature is
still worth depends on the database (a staff link is single use and dies
with its owner's sessions; a candidate link dies when the application moves
to someone else), which is decided here so the web layer only turns the
answer into a session and a redirect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from chatserver.chat import access, ids
from chatserver.chat.identity import Viewer
from chatserver.chat.service import Chat
from chatserver.chat.signing import LINK_TIME_PRECISION, CandidateLink
from chatserver.errors import unauthorized
from chatserver.store import contexts, conversations, people
from chatserver.store.tables import used_login_tokens


@dataclass(frozen=True)
class CandidateEntry:
    """What a valid candidate link opens: the conversation, as whom."""

    conversation_id: str
    candidate_id: str
    generation: int  # the candidate's session generation, for the session


async def redeem_staff_link(
    chat: Chat, staff_id: str, token_id: str, generation: int, expires_at: datetime
) -> None:
    """Single use: the token id is recorded; a second redemption fails.

    `expires_at` is the first instant at which the token no longer verifies
    (its signing second plus its lifetime plus one: validity is checked in
    whole seconds). A used token is remembered until then and pruned only
    after, so it can never be replayed in the last second of its life. A
    link of a removed staff user, or one issued before their sessions were
    ended (an older generation), is refused.
    """
    now = chat.clock()
    try:
        async with chat.db.transaction() as conn:
            row = await people.get_staff(conn, staff_id)
            if (
                row is None
                or row["removed_at"] is not None
                or row["session_generation"] != generation
            ):
                raise unauthorized("This link is not valid.")
            await conn.execute(
                used_login_tokens.insert().values(
                    token_id=token_id, used_at=now, expires_at=expires_at
                )
            )
            await conn.execute(
                used_login_tokens.delete().where(used_login_tokens.c.expires_at <= now)
            )
    except IntegrityError as exc:
        raise unauthorized("This link has already been used.") from exc


async def redeem_candidate_link(chat: Chat, link: CandidateLink) -> CandidateEntry:
    """The conversation a candidate link opens, or `unauthorized`.

    Bound to the candidate and the application: once the application went
    to someone else, every link signed before (theirs) is revoked.
    """
    async with chat.db.transaction() as conn:
        ctx = await contexts.load_by_application(conn, link.application_id)
        binding = await conversations.application_link_binding(conn, link.application_id)
        person = await people.get_candidate(conn, link.candidate_id)
    holds = access.candidate_holds(binding, link.candidate_id, link.signed_at, LINK_TIME_PRECISION)
    if ctx is None or person is None or not holds:
        raise unauthorized("This link is no longer valid.")
    return CandidateEntry(ctx.id, link.candidate_id, int(person["session_generation"]))


async def conversation_of_application(
    chat: Chat, viewer: Viewer, application_id: str
) -> str | None:
    """The id of the application's conversation if the viewer may see it
    (None too for a value that cannot be a host's id: from an address bar,
    it may hold anything, a NUL byte PostgreSQL refuses included)."""
    if not ids.HOST_ID.fullmatch(application_id):
        return None
    async with chat.db.transaction() as conn:
        ctx = await contexts.load_by_application(conn, application_id)
    if ctx is None or not access.may_see(viewer, ctx):
        return None
    return ctx.id
