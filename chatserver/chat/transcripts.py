"""The transcript: a whole conversation as a record (SPEC sections 5a and 6).

Complete, unlike a viewer's history: messages the viewer deleted for
themselves are in it (marked so), messages deleted for everyone are
placeholders that say who deleted them and when (their text is gone from the
database, so it cannot appear), and what happened around the messages
(conversation ended and reopened, application status changes) is taken from
the audit trail and put in time order between them. No internal ids: people
are named, and times are in the viewer's own timezone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chatserver.chat import access
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import State
from chatserver.chat.service import Chat
from chatserver.chat.timeline import SYSTEM_KIND, LineEvent, sentence, status_name
from chatserver.chat.views import VIA_EMAIL
from chatserver.errors import too_large
from chatserver.roles import Role
from chatserver.store import audit, conversations, messages

KIND_NAMES = {
    Role.STAFF.value: "Hiring team",
    Role.CANDIDATE.value: "Candidate",
    SYSTEM_KIND: "System",
}


@dataclass(frozen=True)
class File:
    name: str
    size: int
    content_type: str


@dataclass(frozen=True)
class MessageLine:
    at: datetime  # in the viewer's timezone
    sender_name: str
    sender_kind: str  # staff | candidate | system
    html: str  # sanitised when the message was sent; "" when deleted
    files: tuple[File, ...]
    deleted_by: str | None  # deleted for everyone, by whom ("" if unknown)
    deleted_at: datetime | None
    hidden_for_viewer: bool  # the viewer deleted it for themselves
    by_email: bool = False  # a reply to a notification email ("by email")

    @property
    def deleted(self) -> bool:
        return self.deleted_by is not None

    @property
    def sender_role(self) -> str:
        return KIND_NAMES.get(self.sender_kind, self.sender_kind)


@dataclass(frozen=True)
class EventLine:
    at: datetime
    text: str


Entry = MessageLine | EventLine


@dataclass(frozen=True)
class Transcript:
    org_name: str
    candidate_name: str
    job_title: str
    applied_at: datetime
    status: str
    state: str
    timezone: str
    zone_label: str  # "Asia/Tokyo (JST, UTC+09:00)", as of the printing
    printed_for: str
    printed_at: datetime
    entries: tuple[Entry, ...]

    @property
    def message_count(self) -> int:
        return sum(1 for e in self.entries if isinstance(e, MessageLine))


def viewer_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def utc_offset(local: datetime) -> str:
    """The offset from UTC, such as UTC+09:00 or UTC-03:30."""
    offset = local.strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


def time_zone_name(local: datetime) -> str:
    """What a local time is in: its abbreviation ("JST", "BST") where the
    zone has one, else its offset from UTC."""
    abbreviation = local.tzname() or ""
    if abbreviation and abbreviation[0] not in "+-":
        return abbreviation
    return utc_offset(local)


def zone_label(zone: ZoneInfo, at: datetime) -> str:
    """The zone and what it is at `at`, such as Asia/Tokyo (JST, UTC+09:00)."""
    local = at.astimezone(zone)
    if zone.key == "UTC":
        return "UTC"
    names = dict.fromkeys((time_zone_name(local), utc_offset(local)))
    return f"{zone.key} ({', '.join(names)})"


def _event_text(action: str, actor: str | None, detail: dict[str, Any]) -> str | None:
    """The line for an audit event, or None for those a transcript leaves
    out (link issued, message sent: the messages speak for themselves)."""
    if action == "conversation.ended":
        return sentence(LineEvent.ENDED, actor)
    if action == "conversation.reopened":
        return sentence(LineEvent.REOPENED, actor)
    if action == "application.created":
        return f"Application received (status: {status_name(detail.get('status'))})."
    if action == "application.status_changed":
        return sentence(LineEvent.STATUS_CHANGED, actor, detail.get("from"), detail.get("to"))
    return None


def _deleted_by(deleted: bool, deletion: Any) -> str | None:
    """Who deleted a message for everyone ("" when the trail does not say);
    None for a message that is not deleted."""
    if not deleted:
        return None
    return str(deletion["actor_name"] or "") if deletion is not None else ""


async def build(chat: Chat, viewer: Viewer, conversation_id: str, max_messages: int) -> Transcript:
    """The viewer's transcript of the conversation (`not_found` for anyone
    who may not read it, exactly as for the conversation itself);
    `too_large` for one of more than `max_messages` messages, refused
    before any of them is read."""
    zone = viewer_zone(viewer.timezone)
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        if ctx.last_seq > max_messages:
            raise too_large(
                f"A transcript holds at most {max_messages:,} messages; this conversation has more."
            )
        # A candidate's transcript starts when the application came to them:
        # what was said with a previous candidate is not theirs.
        since = None
        if not viewer.is_staff:
            binding = await conversations.application_link_binding(conn, ctx.application_id)
            since = binding.since if binding is not None else None
        rows = [
            row
            for row in await messages.history(conn, conversation_id, viewer.kind.value, viewer.id)
            if not row["before_candidate"]
        ]
        files = await messages.attachments_for(conn, [r["id"] for r in rows if not r["deleted"]])
        events = await audit.events_for(conn, ctx.application_id, since=since)
    deletions = {
        str(e["detail"].get("message_id")): e
        for e in events
        if e["action"] == "message.deleted" and isinstance(e["detail"], dict)
    }
    # Events and messages in time order; an event stamped with the same time
    # as a message (a reopening by that very message) comes first.
    timeline: list[tuple[datetime, int, int, Entry]] = []
    for row in rows:
        if row["sender_kind"] == SYSTEM_KIND:
            # The same event comes from the audit trail below (which also
            # holds those from before system lines were written), in the
            # same words: told once.
            continue
        deletion = deletions.get(row["id"]) if row["deleted"] else None
        line = MessageLine(
            at=row["created_at"].astimezone(zone),
            sender_name=row["sender_name"],
            sender_kind=row["sender_kind"],
            html="" if row["deleted"] else row["html"],
            files=tuple(
                File(f["name"], f["size"], f["content_type"]) for f in files.get(row["id"], [])
            ),
            deleted_by=_deleted_by(bool(row["deleted"]), deletion),
            deleted_at=deletion["at"].astimezone(zone) if deletion else None,
            hidden_for_viewer=bool(row["hidden"]),
            by_email=row["via"] == VIA_EMAIL,
        )
        timeline.append((row["created_at"], 1, int(row["seq"]), line))
    for event in events:
        detail = event["detail"] if isinstance(event["detail"], dict) else {}
        text = _event_text(event["action"], event["actor_name"], detail)
        if text is not None:
            note = EventLine(event["at"].astimezone(zone), text)
            timeline.append((event["at"], 0, int(event["id"]), note))
    timeline.sort(key=lambda item: item[:3])
    now = chat.clock()
    return Transcript(
        org_name=ctx.org_name,
        candidate_name=ctx.candidate_name,
        job_title=ctx.job_title,
        applied_at=ctx.applied_at.astimezone(zone),
        status=status_name(ctx.status),
        state="Ended" if ctx.state == State.ENDED.value else "Open",
        timezone=zone.key,
        zone_label=zone_label(zone, now),
        printed_for=viewer.name,
        printed_at=now.astimezone(zone),
        entries=tuple(entry for *_, entry in timeline),
    )
