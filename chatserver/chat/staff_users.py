"""Staff users as the host declares them (SPEC section 4): created,
updated, restored, or removed with their sessions and sockets."""

from __future__ import annotations

from typing import Any

from chatserver.chat import events, sessions
from chatserver.chat.policy import Role
from chatserver.chat.service import Chat
from chatserver.errors import invalid, not_found
from chatserver.store import audit, people


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
        if row is None or row["org_id"] != org[0]:
            # Checked on the stored row, after the upsert (which never moves
            # anyone): of two calls at once, the second sees the first's.
            # Moving would hand them the other organisation's conversations.
            raise invalid("This staff user belongs to another organisation.")
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
    await sessions.disconnect(
        chat, Role.STAFF.value, staff_id, events.DisconnectReason.SESSION_ENDED
    )
