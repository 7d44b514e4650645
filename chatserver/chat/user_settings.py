"""A person's own settings (time zone, email notifications), checked
by `chat/fields.py`, and the browser's zone adopted for a candidate who
never chose one."""

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


# The names of plain UTC (without "Etc/"): one zone however it is spelt.
UTC_NAMES = frozenset(
    {"UTC", "UCT", "Universal", "Zulu", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich"}
)


def same_zone(a: str, b: str) -> bool:
    """Whether two zone names are one clock: equal, or both plain UTC
    ("Etc/UTC" is "UTC")."""
    if a == b:
        return True
    return a.removeprefix("Etc/") in UTC_NAMES and b.removeprefix("Etc/") in UTC_NAMES


async def adopt_browser_timezone(chat: Chat, viewer: Viewer, value: object) -> bool:
    """The zone the candidate's browser reports, stored as their zone while
    they have not chosen one in Settings, so that the pages, emails and
    digest use their clock. Staff zones come from the host: never changed
    here. A zone that is the stored one under another name (Etc/UTC for
    UTC) changes nothing. True if the stored zone changed."""
    timezone = check_timezone(value)
    if viewer.is_staff:
        return False
    async with chat.db.transaction() as conn:
        row = await people.get_candidate(conn, viewer.id)
        if row is None or row["timezone_chosen"] or same_zone(row["timezone"], timezone):
            return False
        return await people.adopt_timezone(conn, viewer.id, timezone)
