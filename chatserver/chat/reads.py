"""Read positions: marking a conversation read or unread, and the bell's
entries read; receipts and inbox changes published after commit."""

from __future__ import annotations

from chatserver.chat import access, bell, events, ids
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import can_mark_unread
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid
from chatserver.store import reads as read_positions


async def mark_read(chat: Chat, viewer: Viewer, conversation_id: str, seq: object) -> None:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise invalid("seq must be a non-negative integer.")
    now = chat.clock()
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        seq = min(seq, ctx.last_seq)
        moved = await read_positions.mark_read(
            conn, conversation_id, viewer.kind.value, viewer.id, seq, now
        )
    if moved:
        # Also the staff reader's inbox row change (`realtime/feeds.py`).
        await chat.events.publish([(ctx, events.read_event(conversation_id, viewer.person(), seq))])


async def mark_unread(chat: Chat, viewer: Viewer, conversation_id: str) -> None:
    """Staff only: move the viewer's read position back so the newest
    candidate message they can see counts as unread again. Nothing changes
    when it is unread already or there is none; the read receipt others saw
    is not withdrawn live."""
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        if not can_mark_unread(viewer.kind):
            raise ChatError(ErrorCode.FORBIDDEN, "Only staff can mark a conversation as unread.")
        moved = await read_positions.mark_unread(
            conn, conversation_id, viewer.kind.value, viewer.id, chat.clock()
        )
    if moved:
        await chat.events.publish([(ctx, events.inbox_changed(conversation_id))])


async def mark_notifications_read(
    chat: Chat, viewer: Viewer, conversation_id: object = None
) -> None:
    """The bell's "mark as read": one conversation's entry, or all."""
    if conversation_id is not None and not (
        isinstance(conversation_id, str) and ids.plausible_id(conversation_id)
    ):
        raise invalid("conversation must be a conversation id.")
    await bell.mark_read(chat, viewer, conversation_id)
