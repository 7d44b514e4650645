"""A person's own settings (time zone, email notifications), checked
by `chat/fields.py`."""

from __future__ import annotations

from typing import Any

from chatserver.chat.fields import check_notifications, check_timezone
from chatserver.chat.identity import Viewer
from chatserver.chat.service import Chat
from chatserver.errors import invalid
from chatserver.store import people


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
