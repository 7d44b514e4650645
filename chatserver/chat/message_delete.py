"""Deleting a message for oneself or, one's own, for everyone: hidden
or blanked, audited, and published after commit; deleted for everyone,
its files' bytes are deleted too (`Blobs.release`)."""

from __future__ import annotations

import logging

from chatserver.chat import access, events, ids
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import can_delete_for_everyone, can_delete_for_me
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid, not_found
from chatserver.store import audit, messages

log = logging.getLogger(__name__)


async def delete_message(chat: Chat, viewer: Viewer, message_id: str, scope: str) -> None:
    if scope not in ("me", "everyone"):
        raise invalid("for must be 'me' or 'everyone'.")
    ids.our_id(message_id, "message")
    async with chat.db.transaction() as conn:
        row = await messages.get(conn, message_id)
        if row is None:
            raise not_found("message")
        ctx = await access.conversation_of_item(conn, viewer, row["conversation_id"], "message")
        if scope == "me":
            if not can_delete_for_me(viewer.kind):
                raise ChatError(ErrorCode.FORBIDDEN, "You cannot delete this message.")
            await messages.hide(conn, message_id, viewer.kind.value, viewer.id)
        else:
            if not can_delete_for_everyone(
                viewer.kind, viewer.id, row["sender_kind"], row["sender_id"]
            ):
                raise ChatError(
                    ErrorCode.FORBIDDEN, "You can delete only your own messages for everyone."
                )
            released = await messages.mark_deleted(conn, message_id)
            if released is None:
                return  # deleted already, maybe a moment ago by another request
            await audit.record(
                conn,
                ctx.application_id,
                "message.deleted",
                chat.clock(),
                viewer.person(),
                {"message_id": message_id, "seq": row["seq"]},
            )
    conversation_id = row["conversation_id"]
    if scope == "me":
        # A staff member's own inbox row may now preview an older message;
        # a candidate's hiding changes nothing in the staff inbox.
        if viewer.is_staff:
            await chat.events.publish([(ctx, events.inbox_changed(conversation_id))])
        return
    # Also every inbox row's change (its preview).
    await chat.events.publish([(ctx, events.deleted_event(conversation_id, row["seq"]))])
    if released:
        await _release(chat, released)


async def _release(chat: Chat, sha256s: set[str]) -> None:
    """The deleted files' bytes go too, unless another upload of the same
    content still refers to them. The deletion is committed already, so a
    failure here only leaves the bytes behind, unreachable: logged."""
    try:
        await chat.blobs.release(sha256s)
    except Exception:
        log.exception("the bytes of a deleted message's files were not deleted")
