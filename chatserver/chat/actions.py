"""Every state change of the product: check → persist in one transaction →
publish after commit. Only this module (and `sending.py`, its hot path)
publishes events, so what subscribers see always matches the database."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatserver.chat import access, bell, events, ids, timeline
from chatserver.chat.fields import check_notifications, check_timezone
from chatserver.chat.formatting import render
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import (
    Role,
    State,
    Status,
    can_archive,
    can_delete_for_everyone,
    can_delete_for_me,
    can_end,
    can_mark_unread,
)
from chatserver.chat.sending import SendRequest, SendResult
from chatserver.chat.service import Chat
from chatserver.errors import ChatError, ErrorCode, invalid, not_found
from chatserver.store import archiving, audit, contexts, conversations, messages, people, reads

log = logging.getLogger(__name__)

# -- host upserts --------------------------------------------------------------


@dataclass(frozen=True)
class PersonDefaults:
    """The host's defaults for a person's own settings: written until the
    person chooses in Settings; None (left out) keeps the stored value."""

    timezone: str | None = None
    notifications: str | None = None


async def upsert_staff(
    chat: Chat,
    staff_id: str,
    org: tuple[str, str],
    name: str,
    email: str,
    timezone: str | None = None,
    *,
    notifications: str | None = None,
    ops: bool | None = None,
) -> dict[str, Any]:
    """Create, update or restore a staff user; the stored person after it.

    `timezone` and `notifications` are the host's defaults: written until
    the person chooses in Settings, never over their choice; None keeps the
    stored value. `ops` None keeps the stored operator flag.
    """
    async with chat.db.transaction() as conn:
        existing = await people.get_staff(conn, staff_id)
        if existing is not None and existing["org_id"] != org[0]:
            # Moving would hand them the other organisation's conversations.
            raise invalid("This staff user belongs to another organisation.")
        await people.upsert_org(conn, org[0], org[1])
        await people.upsert_staff(
            conn,
            staff_id,
            org[0],
            name,
            email,
            timezone=timezone,
            notifications=notifications,
            ops=ops,
        )
        row = await people.get_staff(conn, staff_id)
    assert row is not None
    return {
        "id": staff_id,
        "org": {"id": row["org_id"], "name": row["org_name"]},
        "name": row["name"],
        "email": row["email"],
        "timezone": row["timezone"],
        "email_notifications": row["email_notifications"],
        "ops": bool(row["ops"]),
    }


async def remove_staff(chat: Chat, staff_id: str) -> None:
    """The staff user left (SPEC section 4): their sessions and links stop
    working, their open sockets close on every worker, their messages stay,
    and every application of the organisation they had written in records
    `staff.removed`. Removing someone already removed changes nothing."""
    now = chat.clock()
    async with chat.db.transaction() as conn:
        row = await people.get_staff(conn, staff_id)
        if row is None:
            raise not_found("staff user")
        removed = await people.remove_staff(conn, staff_id, now)
        if removed:
            person = {"kind": Role.STAFF.value, "id": staff_id, "name": row["name"]}
            for application_id in await people.applications_written_in(
                conn, staff_id, row["org_id"]
            ):
                await audit.record(
                    conn, application_id, "staff.removed", now, None, {"staff": person}
                )
    await _disconnect(chat, Role.STAFF.value, staff_id, events.DisconnectReason.SESSION_ENDED)


async def sign_out(chat: Chat, kind: str, person_id: str) -> None:
    """End the person's sessions (every session issued before now: the
    session generation moves on) and close their open sockets."""
    async with chat.db.transaction() as conn:
        await people.end_sessions(conn, kind, person_id)
    await _disconnect(chat, kind, person_id, events.DisconnectReason.SESSION_ENDED)


async def _disconnect(
    chat: Chat, kind: str, person_id: str, reason: events.DisconnectReason
) -> None:
    """Close the person's sockets on every worker. Their sessions were
    already changed in the database, so a reconnect is checked afresh; a
    broker outage here only delays the close until the socket's next
    reconnect, it never undoes the revocation."""
    try:
        await chat.events.publish(
            [(events.person_channel(kind, person_id), events.disconnect(reason))]
        )
    except Exception as exc:  # the revocation itself is committed
        log.warning("could not publish the disconnect of %s %s: %s", kind, person_id, exc)


async def upsert_application(
    chat: Chat,
    application_id: str,
    org: tuple[str, str],
    job: tuple[str, str],
    candidate: tuple[str, str, str],
    status: Status,
    applied_at: datetime,
    candidate_defaults: PersonDefaults | None = None,
) -> dict[str, Any]:
    """Create or update an application; a status change is audited and
    pushed to open conversations (it can change who may send).

    Giving the application to another candidate revokes the links and
    sessions of the one before: links are bound to the candidate and signed
    after `candidate_since`, sessions are checked against the application's
    candidate, and the old candidate's open sockets are closed so that
    they reconnect without this conversation.
    """
    candidate_defaults = candidate_defaults or PersonDefaults()
    now = chat.clock()
    async with chat.db.transaction() as conn:
        existing_org = await conversations.application_org(conn, application_id)
        if existing_org is not None and existing_org != org[0]:
            raise invalid("This application belongs to another organisation.")
        job_row = await people.get_job(conn, job[0])
        if job_row is not None and job_row["org_id"] != org[0]:
            raise invalid("This job belongs to another organisation.")
        await people.upsert_org(conn, org[0], org[1])
        await people.upsert_job(conn, job[0], org[0], job[1])
        await people.upsert_candidate(
            conn,
            candidate[0],
            candidate[1],
            candidate[2],
            timezone=candidate_defaults.timezone,
            notifications=candidate_defaults.notifications,
        )
        previous, previous_candidate, conversation_id = await conversations.upsert_application(
            conn, application_id, org[0], job[0], candidate[0], status.value, applied_at, now
        )
        line: dict[str, Any] | None = None
        if previous is None:
            await audit.record(
                conn, application_id, "application.created", now, None, {"status": status.value}
            )
        elif previous != status.value:
            await audit.record(
                conn,
                application_id,
                "application.status_changed",
                now,
                None,
                {"from": previous, "to": status.value},
            )
            happened = timeline.Happened(
                timeline.LineEvent.STATUS_CHANGED, before=previous, after=status.value
            )
            line = await timeline.append(conn, conversation_id, happened, now)
        ctx = await contexts.load(conn, conversation_id)
    assert ctx is not None
    published: list[tuple[str, dict[str, Any]]] = []
    if line is not None:
        published.append((events.conversation_channel(conversation_id), events.message_event(line)))
    if previous is not None and previous != status.value:
        published.append(
            (events.conversation_channel(conversation_id), events.conversation_changed(ctx))
        )
    if previous != status.value:
        # A new row or a new status for the staff inboxes that are open.
        published.append((events.org_channel(org[0]), events.inbox_changed(conversation_id, None)))
    await chat.events.publish(published)
    if previous_candidate is not None and previous_candidate != candidate[0]:
        await _disconnect(
            chat, Role.CANDIDATE.value, previous_candidate, events.DisconnectReason.ACCESS_CHANGED
        )
    return {"id": application_id, "conversation_id": conversation_id, "status": status.value}


async def record_link_issued(chat: Chat, application_id: str) -> str:
    """Audit a candidate link about to be issued; the candidate it is for."""
    async with chat.db.transaction() as conn:
        binding = await conversations.application_link_binding(conn, application_id)
        if binding is None:
            raise not_found("application")
        await audit.record(
            conn,
            application_id,
            "link.issued",
            chat.clock(),
            None,
            {"kind": Role.CANDIDATE.value, "candidate_id": binding[0]},
        )
    return binding[0]


# -- messages ------------------------------------------------------------------


async def send_message(
    chat: Chat,
    viewer: Viewer,
    conversation_id: str,
    client_id: object,
    body: object,
    attachment_ids: object = (),
    *,
    via: str | None = None,
) -> SendResult:
    """Validate, rate-limit and hand the send to the group-commit queue.
    `via` says how the message came when not through the app ("email")."""
    request = await prepare_send(
        chat, viewer, conversation_id, client_id, body, attachment_ids, via=via
    )
    return await chat.sends.submit(request)


async def prepare_send(
    chat: Chat,
    viewer: Viewer,
    conversation_id: str,
    client_id: object,
    body: object,
    attachment_ids: object = (),
    *,
    via: str | None = None,
) -> SendRequest:
    """Validate and rate-limit a send: the part a socket runs in frame order
    before its sends are pipelined (the limit may wait on Redis, and sends
    must reach the queue in the order they came)."""
    client = ids.client_id(client_id)
    if not isinstance(body, str):
        raise invalid("body must be a string.")
    if "\x00" in body:
        raise invalid("body must not contain NUL characters.")
    if attachment_ids is None:
        attachment_ids = ()
    if not isinstance(attachment_ids, list | tuple) or not all(
        isinstance(a, str) for a in attachment_ids
    ):
        raise invalid("attachments must be a list of attachment ids.")
    if len(attachment_ids) > chat.settings.max_attachments_per_message:
        raise invalid(
            f"At most {chat.settings.max_attachments_per_message} attachments per message."
        )
    if len(body) > chat.settings.max_body_chars:
        raise ChatError(
            ErrorCode.TOO_LARGE, f"A message has at most {chat.settings.max_body_chars} characters."
        )
    if not body.strip() and not attachment_ids:
        raise invalid("A message needs a body or an attachment.")
    # Checked here, not in the batch: one malformed id must not become a
    # database error that fails every other send written with it.
    if not ids.plausible_id(conversation_id):
        raise not_found()
    if not all(ids.plausible_id(a) for a in attachment_ids):
        raise not_found("attachment")
    await chat.limits.take_send(viewer.kind.value, viewer.id)
    return SendRequest(
        viewer=viewer,
        conversation_id=conversation_id,
        client_id=client,
        body=body,
        html=render(body),
        attachment_ids=tuple(attachment_ids),
        via=via,
    )


async def mark_read(chat: Chat, viewer: Viewer, conversation_id: str, seq: object) -> None:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise invalid("seq must be a non-negative integer.")
    now = chat.clock()
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        seq = min(seq, ctx.last_seq)
        moved = await reads.mark_read(conn, conversation_id, viewer.kind.value, viewer.id, seq, now)
    if moved:
        frame = events.read_event(conversation_id, viewer.person(), seq)
        items: list[tuple[str, dict[str, Any]]] = [
            (events.conversation_channel(conversation_id), frame)
        ]
        if viewer.is_staff:
            items.append(
                (events.org_channel(ctx.org_id), events.inbox_changed(conversation_id, None))
            )
        await chat.events.publish(items)


async def mark_unread(chat: Chat, viewer: Viewer, conversation_id: str) -> None:
    """Staff only: move the viewer's read position back so the newest
    candidate message they can see counts as unread again. Nothing changes
    when it is unread already or there is none; the read receipt others saw
    is not withdrawn live."""
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        if not can_mark_unread(viewer.kind):
            raise ChatError(ErrorCode.FORBIDDEN, "Only staff can mark a conversation as unread.")
        moved = await reads.mark_unread(
            conn, conversation_id, viewer.kind.value, viewer.id, chat.clock()
        )
    if moved:
        await chat.events.publish(
            [(events.org_channel(ctx.org_id), events.inbox_changed(conversation_id, None))]
        )


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
            [
                (events.conversation_channel(conversation_id), events.message_event(line)),
                (events.conversation_channel(conversation_id), events.conversation_changed(ended)),
                (events.org_channel(ended.org_id), events.inbox_changed(conversation_id, None)),
            ]
        )
    return {"state": State.ENDED.value}


async def set_archived(chat: Chat, viewer: Viewer, conversation_id: str, archived: bool) -> None:
    if not can_archive(viewer.kind):
        raise ChatError(ErrorCode.FORBIDDEN, "Only staff can archive conversations.")
    async with chat.db.transaction() as conn:
        await access.conversation_for(conn, viewer, conversation_id)
        if archived:
            await archiving.archive(conn, conversation_id, viewer.id)
        else:
            await archiving.unarchive(conn, conversation_id, viewer.id)


async def delete_message(chat: Chat, viewer: Viewer, message_id: str, scope: str) -> None:
    if scope not in ("me", "everyone"):
        raise invalid("for must be 'me' or 'everyone'.")
    if not ids.plausible_id(message_id):
        raise not_found("message")
    async with chat.db.transaction() as conn:
        row = await messages.get(conn, message_id)
        if row is None:
            raise not_found("message")
        try:
            ctx = await access.conversation_for(conn, viewer, row["conversation_id"])
        except ChatError as exc:
            raise not_found("message") from exc
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
            if row["deleted"]:
                return
            await messages.mark_deleted(conn, message_id)
            await audit.record(
                conn,
                ctx.application_id,
                "message.deleted",
                chat.clock(),
                viewer.person(),
                {"message_id": message_id, "seq": row["seq"]},
            )
    conversation_id = row["conversation_id"]
    inbox = (events.org_channel(ctx.org_id), events.inbox_changed(conversation_id, None))
    if scope == "me":
        # A staff member's own inbox row may now preview an older message;
        # a candidate's hiding changes nothing in the staff inbox.
        if viewer.is_staff:
            await chat.events.publish([inbox])
        return
    await chat.events.publish(
        [
            (
                events.conversation_channel(conversation_id),
                events.deleted_event(conversation_id, row["seq"]),
            ),
            inbox,
        ]
    )


# -- settings ------------------------------------------------------------------


async def update_settings(chat: Chat, viewer: Viewer, changes: dict[str, Any]) -> None:
    unknown = set(changes) - {"timezone", "email_notifications"}
    if unknown:
        raise invalid(f"Unknown setting: {', '.join(sorted(unknown))}.")
    values: dict[str, str] = {}
    if "timezone" in changes:
        values["timezone"] = check_timezone(changes["timezone"])
    if "email_notifications" in changes:
        values["email_notifications"] = check_notifications(changes["email_notifications"])
    async with chat.db.transaction() as conn:
        await people.update_settings(conn, viewer.kind.value, viewer.id, values)


async def mark_notifications_read(
    chat: Chat, viewer: Viewer, conversation_id: object = None
) -> None:
    """The bell's "mark as read": one conversation's entry, or all."""
    if conversation_id is not None and not (
        isinstance(conversation_id, str) and ids.plausible_id(conversation_id)
    ):
        raise invalid("conversation must be a conversation id.")
    await bell.mark_read(chat, viewer, conversation_id)
