"""`GET /api/conversations/{id}/transcript`: the whole conversation as one
printable HTML page, for the audit trail (SPEC 5a and 6).

Rendered on the server, in the viewer's timezone, so it prints the same
from any browser and needs no script.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatserver.chat import queries
from chatserver.web.deps import require_viewer, services
from chatserver.web.templating import render_page


def local_time(wire: str, timezone: str) -> datetime:
    return datetime.fromisoformat(wire.replace("Z", "+00:00")).astimezone(ZoneInfo(timezone))


async def _all_messages(request: Request, conversation_id: str) -> list[dict[str, Any]]:
    """Every message in seq order, read in the API's largest pages."""
    who = await require_viewer(request)
    chat = services(request).chat
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await queries.history(
            chat, who.viewer, conversation_id, after=after, limit=queries.HISTORY_MAX
        )
        found.extend(page)
        if len(page) < queries.HISTORY_MAX:
            return found
        after = int(page[-1]["seq"])


async def transcript(request: Request) -> Response:
    who = await require_viewer(request)
    chat = services(request).chat
    conversation_id = request.path_params["id"]
    summary = await queries.conversation(chat, who.viewer, conversation_id)
    timezone = who.viewer.timezone
    rows = [
        {**m, "local": local_time(m["created_at"], timezone)}
        for m in await _all_messages(request, conversation_id)
        if not m["hidden"]
    ]
    response = render_page(
        request,
        "transcript.html",
        {
            "conversation": summary,
            "messages": rows,
            "timezone": timezone,
            "viewer": who.viewer,
            "applied": local_time(summary["applied_at"], timezone),
        },
    )
    filename = f"transcript-{summary['application_id']}.html"
    disposition = "attachment" if request.query_params.get("download") else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


routes = [Route("/api/conversations/{id}/transcript", transcript, methods=["GET"])]
