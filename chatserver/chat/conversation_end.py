"""Staff ending a conversation: the state, its audit event and system
line in one transaction, then published."""

from __future__ import annotations

from chatserver.chat import access, events, timeline
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import State, can_end
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode
from chatserver.store import audit, contexts, conversations


async def end_conversation(chat: Chat, viewer: Viewer, conversation_id: str) -> dict[str, str]:
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id, for_update=True)
        if not can_end(viewer.kind):
            raise ChatError(ErrorCode.FORBIDDEN, "Only staff can end a conversation.")
        changed = ctx.state != State.ENDED.value
        if changed:
            now = chat.clock()
            await conversations.set_state(conn, conversation_id, State.ENDED.value)
            await audit.record(conn, ctx.application_id, "conversation.ended", now, viewer.person())
            happened = timeline.Happened(timeline.LineEvent.ENDED, by=viewer.person())
            line = await timeline.append(conn, conversation_id, happened, now)
            ended = await contexts.load(conn, conversation_id)
    if changed and ended is not None:
        await chat.events.publish(
            [(ended, events.message_event(line)), (ended, events.conversation_changed(ended))]
        )
    return {"state": State.ENDED.value}
