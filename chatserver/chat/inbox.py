"""The inbox (SPEC 5a): a viewer's page of conversations, filtered,
searched, sorted and paged by keyset cursor, and what each staff member's
open inbox rows show after a change (the `inbox` frames)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from chatserver.chat import ids, views
from chatserver.chat.identity import Viewer
from chatserver.chat.service import Chat
from chatserver.errors import invalid
from chatserver.json_types import JSON
from chatserver.store import inbox as inbox_store
from chatserver.store import messages
from chatserver.store.contexts import ConversationContext
from chatserver.store.folding import fold
from chatserver.store.inbox import Filter, Keyset, ListQuery, Sort

PAGE_SIZE = 50
# A phone shows a dozen rows; more than this per request is a scraper.
PAGE_MAX = 100
# A real cursor is about 100 characters; a long one is not ours.
CURSOR_MAX_CHARS = 512
SEARCH_MAX_CHARS = 200


def _encode_cursor(key: Keyset) -> str:
    at = key.activity.astimezone(UTC).isoformat()
    raw = orjson.dumps([key.unread_flag, at, key.conversation_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> Keyset:
    """A `next` value from an earlier page. Anything else (a forged or
    truncated cursor, a timestamp without a zone or beyond the calendar) is
    `invalid`, never a database error."""
    if len(cursor) > CURSOR_MAX_CHARS:
        raise invalid("cursor is not valid.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        flag, at, last_id = orjson.loads(raw)
        if (
            type(flag) is not int
            or flag not in (0, 1)
            or not isinstance(at, str)
            or not ids.plausible_id(last_id)
        ):
            raise ValueError
        activity = datetime.fromisoformat(at)
        if activity.tzinfo is None:
            raise ValueError
        # OverflowError: an offset that moves the time out of years 1-9999.
        activity = activity.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise invalid("cursor is not valid.") from exc
    return Keyset(int(flag), activity, last_id)


def _choice(value: str, choices: type[StrEnum], what: str) -> Any:
    try:
        return choices(value)
    except ValueError:
        names = ", ".join(c.value for c in choices)
        raise invalid(f"{what} must be one of {names}.") from None


async def list_conversations(
    chat: Chat,
    viewer: Viewer,
    *,
    filter: str = "all",
    q: str = "",
    sort: str = "newest",
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> JSON:
    """A page of the viewer's inbox (SPEC 5a). Search folds case and accents
    on both sides (chatserver/store/folding.py)."""
    chosen_filter: Filter = _choice(filter, Filter, "filter")
    chosen_sort: Sort = _choice(sort, Sort, "sort")
    if len(q) > SEARCH_MAX_CHARS:
        raise invalid(f"q has at most {SEARCH_MAX_CHARS} characters.")
    if "\x00" in q:
        raise invalid("q must not contain NUL characters.")
    if not 1 <= limit <= PAGE_MAX:
        raise invalid(f"limit must be between 1 and {PAGE_MAX}.")
    query = ListQuery(
        filter=chosen_filter,
        folded_search=fold(q.strip()),
        sort=chosen_sort,
        after=_decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    async with chat.db.transaction() as conn:
        rows = await inbox_store.list_conversations(
            conn,
            viewer.kind.value,
            viewer.id,
            query,
            org_id=viewer.org_id,
            application_ids=viewer.application_ids,
        )
        page, more = rows[:limit], len(rows) > limit
        page_ids = [r["id"] for r in page]
        last = await messages.last_visible(conn, page_ids, viewer.kind.value, viewer.id)
        matched = {}
        if query.folded_search:
            matched = await messages.last_visible(
                conn, page_ids, viewer.kind.value, viewer.id, matching=query.folded_search
            )
        shown = {m["id"] for m in (*last.values(), *matched.values())}
        files = await messages.attachments_for(conn, sorted(shown))

    def wire(message: Any) -> JSON | None:
        return views.message(message, files.get(message["id"], [])) if message else None

    items = []
    for row in page:
        ctx = ConversationContext.of(row)
        item = views.conversation_summary(ctx, int(row["unread"]), wire(last.get(row["id"])))
        if query.folded_search:
            # Why the row matched: the newest message found, or null when
            # the name or the job title did.
            item["match"] = wire(matched.get(row["id"]))
        items.append(item)
    next_cursor = None
    if more:
        tail = page[-1]
        next_cursor = _encode_cursor(
            Keyset(int(tail["unread_flag"]), tail["activity_at"], tail["id"])
        )
    return {"conversations": items, "next": next_cursor}


@dataclass(frozen=True)
class InboxUpdate:
    """The content of one `inbox` frame for one staff member (docs/realtime.md)."""

    conversation: str
    unread: int
    last_message: JSON | None  # their newest visible message
    state: str
    status: str
    candidate: JSON  # {"id", "name"}: who the row is with now


async def inbox_updates(
    chat: Chat, conversation_ids: Sequence[str], staff_ids: Sequence[str]
) -> dict[str, list[InboxUpdate]]:
    """What each of these staff members' inbox rows of these conversations
    show now, by staff id, in the order of `conversation_ids`; a staff
    member of another organisation gets nothing."""
    async with chat.db.transaction() as conn:
        entries = await inbox_store.inbox_entries(conn, conversation_ids, staff_ids)
        shown = [e.last_message["id"] for e in entries if e.last_message is not None]
        files = await messages.attachments_for(conn, sorted(set(shown)))
    order = {conversation_id: index for index, conversation_id in enumerate(conversation_ids)}
    updates: dict[str, list[InboxUpdate]] = {}
    for entry in sorted(entries, key=lambda e: (e.staff_id, order[e.conversation_id])):
        last = entry.last_message
        shown_message = None if last is None else views.message(last, files.get(last["id"], []))
        updates.setdefault(entry.staff_id, []).append(
            InboxUpdate(
                conversation=entry.conversation_id,
                unread=entry.unread,
                last_message=shown_message,
                state=entry.state,
                status=entry.status,
                candidate={"id": entry.candidate_id, "name": entry.candidate_name},
            )
        )
    return updates
