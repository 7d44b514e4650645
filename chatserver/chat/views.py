"""The spec's wire objects (MESSAGE, PERSON, conversation summaries), built
from store rows. Pure functions: the same dicts go to HTTP, WebSocket frames
and broker events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chatserver.chat.policy import ConversationFacts, Role, State, Status, can_send
from chatserver.clock import wire_time
from chatserver.json_types import JSON
from chatserver.store.contexts import ConversationContext, SendContext

# A store row (RowMapping) or a dict with the same keys.
Record = Mapping[Any, Any]
# The most messages one history page holds (SPEC: `limit` up to 200), and
# the page a subscribe opens with.
HISTORY_MAX = 200
# How a message arrived (MESSAGE `via`).
VIA_APP = "app"
VIA_EMAIL = "email"


def person(kind: str, person_id: str, name: str) -> JSON:
    return {"kind": kind, "id": person_id, "name": name}


def attachment(row: Record) -> JSON:
    """An attachment object; an image the server could draw a thumbnail of
    also has `thumbnail_url` (authorised like `url`)."""
    result = {
        "id": row["id"],
        "name": row["name"],
        "size": row["size"],
        "content_type": row["content_type"],
        "url": f"/api/attachments/{row['id']}",
    }
    if row.get("thumbnail_sha256"):
        result["thumbnail_url"] = f"/api/attachments/{row['id']}/thumbnail"
    return result


def message(
    row: Record,
    attachments: Sequence[Record] = (),
    *,
    hidden: bool = False,
) -> JSON:
    """MESSAGE. A hidden or deleted message keeps its seq but loses its content.
    A system line (chatserver/chat/timeline.py) adds its `event`. One from
    before the application came to the viewing candidate does not even say
    which earlier candidate wrote it (`store/messages.before_candidate`)."""
    deleted = bool(row["deleted"])
    empty = hidden or deleted
    sender = person(row["sender_kind"], row["sender_id"], row["sender_name"])
    if row.get("before_candidate") and row["sender_kind"] == Role.CANDIDATE:
        sender = person(row["sender_kind"], "", "")
    result = {
        "id": row["id"],
        "conversation": row["conversation_id"],
        "seq": row["seq"],
        "sender": sender,
        "body": "" if empty else row["body"],
        "html": "" if empty else row["html"],
        "attachments": [] if empty else [attachment(a) for a in attachments],
        "created_at": wire_time(row["created_at"]),
        "deleted": deleted,
        "hidden": hidden,
        # An added field (SPEC: fields may be added): "email" for a reply to
        # a notification email, shown as "by email"; "app" otherwise.
        "via": row.get("via") or VIA_APP,
    }
    event = row.get("event")
    if event is not None and not empty:
        result["event"] = event
    return result


def shown_ids(rows: Sequence[Record]) -> list[str]:
    """The messages of a history page whose attachments are shown: a
    message hidden for this viewer shows none (so they are not read)."""
    return [r["id"] for r in rows if not r["hidden"]]


def history_page(rows: Sequence[Record], files: Mapping[str, Sequence[Record]]) -> list[JSON]:
    """A history page as this viewer sees it, from `messages.history`'s rows
    and the attachments of their `shown_ids`: THE rule of the history
    request and of a subscribe's opening, batched or not."""
    return [message(r, files.get(r["id"], ()), hidden=bool(r["hidden"])) for r in rows]


def facts(ctx: SendContext) -> ConversationFacts:
    return ConversationFacts(
        status=Status(ctx.status),
        state=State(ctx.state),
        has_staff_message=ctx.has_staff_message,
    )


def changed_facts(event: Mapping[str, Any]) -> ConversationFacts:
    """The facts a `conversation_changed` event carries (ValueError when
    it is malformed)."""
    return ConversationFacts(
        status=Status(str(event.get("status"))),
        state=State(str(event.get("state"))),
        has_staff_message=bool(event.get("has_staff_message")),
    )


def conversation_summary(ctx: ConversationContext, unread: int, last_message: JSON | None) -> JSON:
    return {
        "id": ctx.id,
        "application_id": ctx.application_id,
        "candidate": {"id": ctx.candidate_id, "name": ctx.candidate_name},
        "job": {"id": ctx.job_id, "title": ctx.job_title},
        "org": {"id": ctx.org_id, "name": ctx.org_name},
        "status": ctx.status,
        "applied_at": wire_time(ctx.applied_at),
        "state": ctx.state,
        "unread": unread,
        "last_message": last_message,
    }


def conversation_state(conversation_id: str, facts: ConversationFacts, role: Role) -> JSON:
    """The `conversation` frame body for one role: can_send depends on who asks."""
    return {
        "type": "conversation",
        "conversation": conversation_id,
        "state": facts.state.value,
        "can_send": can_send(role, facts),
    }
