"""Reads: who is signed in, a conversation and its history, the audit
trail (the inbox is `chat/inbox.py`). Nothing here changes state or
publishes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from chatserver.chat import access, views
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role, send_refusal
from chatserver.chat.service import Chat
from chatserver.chat.viewers import Lookup, read_bindings, viewer_from_row
from chatserver.clock import wire_time
from chatserver.errors import invalid, not_found
from chatserver.json_types import JSON
from chatserver.store import archiving, audit, conversations, messages, people, reads
from chatserver.store.contexts import ConversationContext

HISTORY_DEFAULT = 50
HISTORY_MAX = views.HISTORY_MAX
# The largest integer both databases can compare with (signed 64-bit).
INT_MAX = 2**63 - 1
SEQ_MAX = messages.SEQ_MAX


async def viewer_for(
    chat: Chat,
    kind: str,
    person_id: str,
    application_ids: tuple[str, ...] = (),
    generation: int | None = None,
    signed_at: datetime | None = None,
) -> Viewer | None:
    """The person as the domain sees them, or None if they are unknown,
    removed by the host, or (`generation` given: a session's) their
    sessions were ended since it was issued. One transaction of its own:
    the session check of requests and handshakes batches it instead
    (`chat/viewers.py`, `Chat.viewers`)."""
    lookup = Lookup(kind, person_id, application_ids, generation, signed_at)
    async with chat.db.transaction() as conn:
        if lookup.is_staff:
            row = await people.get_staff(conn, person_id)
        else:
            row = await people.get_candidate(conn, person_id)
        bindings = await read_bindings(conn, [lookup])
    return viewer_from_row(lookup, row, bindings)


async def staff_link_generation(chat: Chat, staff_id: str) -> int | None:
    """The session generation a new login link of this staff user carries,
    or None if there is no such (current) staff user."""
    async with chat.db.transaction() as conn:
        row = await people.get_staff(conn, staff_id)
    if row is None or row["removed_at"] is not None:
        return None
    return int(row["session_generation"])


async def email_setting(chat: Chat, kind: str, person_id: str) -> tuple[str, str] | None:
    """A person's name and email setting (the unsubscribe page), or None."""
    async with chat.db.transaction() as conn:
        if kind == Role.STAFF:
            row = await people.get_staff(conn, person_id)
        else:
            row = await people.get_candidate(conn, person_id)
    return None if row is None else (str(row["name"]), str(row["email_notifications"]))


async def everyone(chat: Chat) -> tuple[list[RowMapping], list[RowMapping]]:
    """Every staff user and every application (the demo's sign-in page)."""
    async with chat.db.transaction() as conn:
        return await people.everyone(conn)


async def application_candidate(chat: Chat, application_id: str) -> str | None:
    """The candidate an application is for now, or None (no such application)."""
    async with chat.db.transaction() as conn:
        binding = await conversations.application_link_binding(conn, application_id)
    return None if binding is None else binding.candidate_id


async def is_operator(chat: Chat, viewer: Viewer) -> bool:
    """Whether the host marked this staff user as an operator (the ops page)."""
    if not viewer.is_staff:
        return False
    async with chat.db.transaction() as conn:
        row = await people.get_staff(conn, viewer.id)
    return row is not None and bool(row["ops"])


async def me(chat: Chat, viewer: Viewer, csrf_token: str) -> JSON:
    async with chat.db.transaction() as conn:
        if viewer.is_staff:
            row = await people.get_staff(conn, viewer.id)
        else:
            row = await people.get_candidate(conn, viewer.id)
    if row is None:
        raise not_found("person")
    result: JSON = {
        "kind": viewer.kind.value,
        "id": viewer.id,
        "name": row["name"],
        "timezone": row["timezone"],
        # False while the zone is a default (the host's, or a candidate's
        # browser's): the pages adopt a candidate's browser zone until then.
        "timezone_chosen": bool(row["timezone_chosen"]),
        "email_notifications": row["email_notifications"],
        "csrf_token": csrf_token,
    }
    if viewer.is_staff:
        result["org"] = {"id": row["org_id"], "name": row["org_name"]}
    return result


async def conversation(chat: Chat, viewer: Viewer, conversation_id: str) -> JSON:
    """One conversation's summary plus what this viewer may do in it."""
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        unread = await reads.unread_for(conn, conversation_id, viewer.kind.value, viewer.id)
        read_positions = await reads.readers(conn, conversation_id)
        last = (
            await messages.last_visible(conn, [conversation_id], viewer.kind.value, viewer.id)
        ).get(conversation_id)
        files = await messages.attachments_for(conn, [last["id"]] if last else [])
        archived = viewer.is_staff and await archiving.is_archived(conn, conversation_id, viewer.id)
    last_message = views.message(last, files.get(last["id"], [])) if last else None
    summary = views.conversation_summary(ctx, unread, last_message)
    facts = views.facts(ctx)
    summary.update(views.conversation_state(ctx.id, facts, viewer.kind))
    summary["type"] = "conversation"
    summary["last_seq"] = ctx.last_seq
    # The sentence a disabled composer shows: the policy's own answer.
    refusal = send_refusal(viewer.kind, facts)
    summary["send_disabled_reason"] = None if refusal is None else refusal.reason
    # Whether this staff member archived it (a candidate has no archive).
    summary["archived"] = archived
    # A candidate sees the hiring team's reads and their own, never an
    # earlier candidate's (the host may have given the application on).
    summary["reads"] = [
        {"kind": r["reader_kind"], "id": r["reader_id"], "seq": r["seq"]}
        for r in read_positions
        if viewer.is_staff or r["reader_kind"] != Role.CANDIDATE or r["reader_id"] == viewer.id
    ]
    return summary


def parse_int(value: str | None, what: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise invalid(f"{what} must be an integer.") from exc
    if not 0 <= number <= INT_MAX:
        raise invalid(f"{what} must be a non-negative 64-bit integer.")
    return number


async def history(
    chat: Chat,
    viewer: Viewer,
    conversation_id: str,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = HISTORY_DEFAULT,
) -> list[JSON]:
    if not 1 <= limit <= HISTORY_MAX:
        raise invalid(f"limit must be between 1 and {HISTORY_MAX}.")
    # Past every possible seq: "before" bounds nothing, "after" keeps nothing.
    if before is not None and before > SEQ_MAX:
        before = None
    if after is not None and after > SEQ_MAX:
        after = SEQ_MAX
    async with chat.db.transaction() as conn:
        await access.conversation_for(conn, viewer, conversation_id)
        return await _history_page(conn, viewer, conversation_id, after, before, limit)


async def opening(
    chat: Chat, viewer: Viewer, conversation_id: str, after: int
) -> tuple[ConversationContext, list[JSON]]:
    """What a subscribe sends first (SPEC section 5): the conversation as
    this viewer may see it and the first page of history after `after`,
    read in one transaction so the page and the context agree. One
    transaction of its own: the hub's subscribes batch it instead
    (`chat/openings.py`, `Chat.openings`)."""
    # Past every possible seq keeps nothing (as `history`).
    after = min(after, SEQ_MAX)
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        page = await _history_page(conn, viewer, conversation_id, after, None, HISTORY_MAX)
    return ctx, page


async def _history_page(
    conn: AsyncConnection,
    viewer: Viewer,
    conversation_id: str,
    after: int | None,
    before: int | None,
    limit: int,
) -> list[JSON]:
    rows = await messages.history(
        conn,
        conversation_id,
        viewer.kind.value,
        viewer.id,
        after=after,
        before=before,
        limit=limit,
    )
    files = await messages.attachments_for(conn, views.shown_ids(rows))
    return views.history_page(rows, files)


async def stored_between(chat: Chat, conversation_id: str, after: int, upto: int) -> list[JSON]:
    """The messages with after < seq <= upto as every subscriber sees them
    live (a room filling a gap or catching up)."""
    async with chat.db.transaction() as conn:
        rows = await messages.range_(conn, conversation_id, after, upto)
        files = await messages.attachments_for(conn, [row["id"] for row in rows])
    return [views.message(row, files.get(row["id"], [])) for row in rows]


# Order of events recorded at the same instant: a reopen (written by the
# send that reopened) comes before that message, a delete after it.
_SAME_INSTANT_RANK = {"message.sent": 1, "message.deleted": 2}


async def audit_trail(chat: Chat, application_id: str) -> list[JSON]:
    """The application's audit events, oldest first: the recorded ones
    merged with `message.sent` events derived from the stored messages."""
    async with chat.db.transaction() as conn:
        if await conversations.application_org(conn, application_id) is None:
            raise not_found("application")
        rows = await audit.events_for(conn, application_id)
        sent = await audit.messages_sent(conn, application_id)
    recorded = [
        (
            r["at"],
            {
                "at": wire_time(r["at"]),
                "actor": views.person(r["actor_kind"], r["actor_id"], r["actor_name"])
                if r["actor_kind"]
                else None,
                "action": r["action"],
                "detail": r["detail"],
            },
        )
        for r in rows
    ]
    derived = [
        (
            m["created_at"],
            {
                "at": wire_time(m["created_at"]),
                "actor": views.person(m["sender_kind"], m["sender_id"], m["sender_name"]),
                "action": "message.sent",
                # A reply by email says so ("via": "email").
                "detail": {"message_id": m["id"], "seq": m["seq"]}
                | ({"via": m["via"]} if m["via"] else {}),
            },
        )
        for m in sent
    ]
    # Both lists are already in order (insertion id, seq); a stable sort by
    # time keeps that order among equal instants.
    merged = sorted(
        recorded + derived,
        key=lambda item: (item[0], _SAME_INSTANT_RANK.get(item[1]["action"], 0)),
    )
    return [event for _, event in merged]
