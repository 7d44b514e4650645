"""Staff archiving a conversation for themselves (their own inbox only)."""

from __future__ import annotations

from chatserver.chat import access
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import can_archive
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode
from chatserver.store import archiving


async def set_archived(chat: Chat, viewer: Viewer, conversation_id: str, archived: bool) -> None:
    if not can_archive(viewer.kind):
        raise ChatError(ErrorCode.FORBIDDEN, "Only staff can archive conversations.")
    async with chat.db.transaction() as conn:
        await access.conversation_for(conn, viewer, conversation_id)
        if archived:
            await archiving.archive(conn, conversation_id, viewer.id)
        else:
            await archiving.unarchive(conn, conversation_id, viewer.id)
