"""Tenancy: which conversations a viewer may see at all.

Anything outside a viewer's reach answers `not_found`, exactly like a
conversation that does not exist, so ids of other tenants reveal nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import ids
from chatserver.chat.identity import Viewer
from chatserver.errors import ChatError, not_found
from chatserver.store import contexts
from chatserver.store.contexts import ConversationContext, SendContext
from chatserver.store.conversations import Binding

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def candidate_holds(
    binding: Binding | None, candidate_id: str, signed_at: datetime | None, precision: timedelta
) -> bool:
    """THE rule binding a candidate's link, reply address or session to an
    application: it holds the application while the application is theirs
    and was given to them before the token was signed, so a change of
    candidate revokes everything signed before, and giving the application
    back revives none of it. `candidate_since` is compared at the token's
    `precision`; `signed_at` None (not read from a token) checks only whose
    it is."""
    if binding is None or binding.candidate_id != candidate_id:
        return False
    if binding.since is None or signed_at is None:
        return True
    since = binding.since
    return since - (since - _EPOCH) % precision <= signed_at


def may_see(viewer: Viewer, ctx: SendContext) -> bool:
    if viewer.is_staff:
        return ctx.org_id == viewer.org_id
    return ctx.candidate_id == viewer.id and ctx.application_id in viewer.application_ids


async def conversation_for(
    conn: AsyncConnection, viewer: Viewer, conversation_id: str, *, for_update: bool = False
) -> ConversationContext:
    ids.our_id(conversation_id)
    ctx = await contexts.load(conn, conversation_id, for_update=for_update)
    if ctx is None or not may_see(viewer, ctx):
        raise not_found()
    return ctx


async def conversation_of_item(
    conn: AsyncConnection, viewer: Viewer, conversation_id: str, item: str
) -> ConversationContext:
    """The conversation of something found by its own id (a message, an
    attachment): out of the viewer's reach, it is the item that is
    `not_found`, never the conversation, whose id was not asked for."""
    try:
        return await conversation_for(conn, viewer, conversation_id)
    except ChatError as exc:
        raise not_found(item) from exc
