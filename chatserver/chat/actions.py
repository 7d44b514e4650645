"""Every state change of the product: check → persist in one transaction →
publish after commit. Only this module (and `sending.py`, its hot path)
publishes events, so what subscribers see always matches the database."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy.exc import IntegrityError

from chatserver.chat import access, events
from chatserver.chat.formatting import render
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import (
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
from chatserver.errors import ChatError, ErrorCode, invalid, not_found, unauthorized
from chatserver.store import audit, conversations, messages, notifications, people
from chatserver.store.tables import used_login_tokens

NOTIFICATION_SETTINGS = ("each", "daily", "off")
# Host ids appear in URLs and channel names; keep them to a safe alphabet.
HOST_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
TIMEZONES = frozenset(available_timezones())


def check_host_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not HOST_ID.fullmatch(value):
        raise invalid(f"{what} must be 1-128 characters of letters, digits and . _ : @ -")
    return value


def check_timezone(value: object) -> str:
    if not isinstance(value, str) or value not in TIMEZONES:
        raise invalid("timezone must be an IANA time zone name such as Europe/London.")
    return value


def parse_time(value: object, what: str) -> datetime:
    """An ISO 8601 timestamp from the host; one without an offset is UTC."""
    if not isinstance(value, str):
        raise invalid(f"{what} must be an ISO 8601 timestamp.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(f"{what} must be an ISO 8601 timestamp.") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# -- host upserts --------------------------------------------------------------


async def upsert_staff(
    chat: Chat, staff_id: str, org: tuple[str, str], name: str, email: str, timezone: str
) -> None:
    async with chat.db.transaction() as conn:
        existing = await people.get_staff(conn, staff_id)
        if existing is not None and existing["org_id"] != org[0]:
            # Moving would hand them the other organisation's conversations.
            raise invalid("This staff user belongs to another organisation.")
        await people.upsert_org(conn, org[0], org[1])
        await people.upsert_staff(conn, staff_id, org[0], name, email, timezone)


async def upsert_application(
    chat: Chat,
    application_id: str,
    org: tuple[str, str],
    job: tuple[str, str],
    candidate: tuple[str, str, str],
    status: Status,
    applied_at: datetime,
) -> dict[str, Any]:
    """Create or update an application; a status change is audited and
    pushed to open conversations (it can change who may send)."""
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
        await people.upsert_candidate(conn, candidate[0], candidate[1], candidate[2])
        previous, conversation_id = await conversations.upsert_application(
            conn, application_id, org[0], job[0], candidate[0], status.value, applied_at, now
        )
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
        ctx = await conversations.context(conn, conversation_id)
    assert ctx is not None
    published: list[tuple[str, dict[str, Any]]] = []
    if previous is not None and previous != status.value:
        published.append(
            (events.conversation_channel(conversation_id), events.conversation_changed(ctx))
        )
    if previous != status.value:
        # A new row or a new status for the staff inboxes that are open.
        published.append((events.org_channel(org[0]), events.inbox_changed(conversation_id, None)))
    await chat.events.publish(published)
    return {"id": application_id, "conversation_id": conversation_id, "status": status.value}


async def record_link_issued(chat: Chat, application_id: str) -> None:
    async with chat.db.transaction() as conn:
        if await conversations.application_org(conn, application_id) is None:
            raise not_found("application")
        await audit.record(
            conn, application_id, "link.issued", chat.clock(), None, {"kind": "candidate"}
        )


async def redeem_staff_link(chat: Chat, staff_id: str, token_id: str) -> None:
    """Single use: the token id is recorded; a second redemption fails.

    A used token is remembered only as long as its link could still be
    valid (it was used within its lifetime), so older rows are pruned here.
    """
    now = chat.clock()
    try:
        async with chat.db.transaction() as conn:
            if await people.get_staff(conn, staff_id) is None:
                raise unauthorized("This link is not valid.")
            await conn.execute(used_login_tokens.insert().values(token_id=token_id, used_at=now))
            expired = now - timedelta(seconds=chat.settings.staff_link_seconds)
            await conn.execute(
                used_login_tokens.delete().where(used_login_tokens.c.used_at < expired)
            )
    except IntegrityError as exc:
        raise unauthorized("This link has already been used.") from exc


# -- messages ------------------------------------------------------------------


def _check_client_id(value: object) -> str:
    if not isinstance(value, str):
        raise invalid("client_id must be a UUID.")
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise invalid("client_id must be a UUID.") from exc


async def send_message(
    chat: Chat,
    viewer: Viewer,
    conversation_id: str,
    client_id: object,
    body: object,
    attachment_ids: object = (),
) -> SendResult:
    """Validate, rate-limit and hand the send to the group-commit queue."""
    client = _check_client_id(client_id)
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
    if not access.plausible_id(conversation_id):
        raise not_found()
    if not all(access.plausible_id(a) for a in attachment_ids):
        raise not_found("attachment")
    chat.limiter.take(f"{viewer.kind.value}:{viewer.id}")
    request = SendRequest(
        viewer=viewer,
        conversation_id=conversation_id,
        client_id=client,
        body=body,
        html=render(body),
        attachment_ids=tuple(attachment_ids),
    )
    return await chat.sends.submit(request)


async def mark_read(chat: Chat, viewer: Viewer, conversation_id: str, seq: object) -> None:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise invalid("seq must be a non-negative integer.")
    now = chat.clock()
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id)
        seq = min(seq, int(ctx["last_seq"]))
        moved = await conversations.mark_read(
            conn, conversation_id, viewer.kind.value, viewer.id, seq, now
        )
        if moved:
            await notifications.mark_conversation_read(
                conn, viewer.kind.value, viewer.id, conversation_id, seq, now
            )
    if moved:
        frame = {
            "type": "read",
            "conversation": conversation_id,
            "reader": viewer.person(),
            "seq": seq,
        }
        items: list[tuple[str, dict[str, Any]]] = [
            (events.conversation_channel(conversation_id), frame)
        ]
        if viewer.is_staff:
            items.append(
                (events.org_channel(ctx["org_id"]), events.inbox_changed(conversation_id, None))
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
        moved = await conversations.mark_unread(
            conn, conversation_id, viewer.kind.value, viewer.id, chat.clock()
        )
    if moved:
        await chat.events.publish(
            [(events.org_channel(ctx["org_id"]), events.inbox_changed(conversation_id, None))]
        )


async def end_conversation(chat: Chat, viewer: Viewer, conversation_id: str) -> dict[str, str]:
    async with chat.db.transaction() as conn:
        ctx = await access.conversation_for(conn, viewer, conversation_id, for_update=True)
        if not can_end(viewer.kind):
            raise ChatError(ErrorCode.FORBIDDEN, "Only staff can end a conversation.")
        changed = ctx["state"] != State.ENDED.value
        if changed:
            await conversations.set_state(conn, conversation_id, State.ENDED.value)
            await audit.record(
                conn, ctx["application_id"], "conversation.ended", chat.clock(), viewer.person()
            )
            ended = await conversations.context(conn, conversation_id)
    if changed and ended is not None:
        await chat.events.publish(
            [
                (events.conversation_channel(conversation_id), events.conversation_changed(ended)),
                (events.org_channel(ended["org_id"]), events.inbox_changed(conversation_id, None)),
            ]
        )
    return {"state": State.ENDED.value}


async def set_archived(chat: Chat, viewer: Viewer, conversation_id: str, archived: bool) -> None:
    if not can_archive(viewer.kind):
        raise ChatError(ErrorCode.FORBIDDEN, "Only staff can archive conversations.")
    async with chat.db.transaction() as conn:
        await access.conversation_for(conn, viewer, conversation_id)
        if archived:
            await conversations.archive(conn, conversation_id, viewer.id)
        else:
            await conversations.unarchive(conn, conversation_id, viewer.id)


async def delete_message(chat: Chat, viewer: Viewer, message_id: str, scope: str) -> None:
    if scope not in ("me", "everyone"):
        raise invalid("for must be 'me' or 'everyone'.")
    if not access.plausible_id(message_id):
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
                ctx["application_id"],
                "message.deleted",
                chat.clock(),
                viewer.person(),
                {"message_id": message_id, "seq": row["seq"]},
            )
    conversation_id = row["conversation_id"]
    inbox = (events.org_channel(ctx["org_id"]), events.inbox_changed(conversation_id, None))
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
                {"type": "deleted", "conversation": conversation_id, "seq": row["seq"]},
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
        choice = changes["email_notifications"]
        if choice not in NOTIFICATION_SETTINGS:
            raise invalid("email_notifications must be 'each', 'daily' or 'off'.")
        values["email_notifications"] = str(choice)
    async with chat.db.transaction() as conn:
        await people.update_settings(conn, viewer.kind.value, viewer.id, values)


async def mark_notifications_read(chat: Chat, viewer: Viewer) -> None:
    async with chat.db.transaction() as conn:
        await notifications.mark_all_read(conn, viewer.kind.value, viewer.id, chat.clock())
