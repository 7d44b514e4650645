"""The HTML pages (SPEC section 6): server-rendered shells that the browser
client in `static/js/` brings to life over `/ws` and the session API.

Pages carry what the client needs in `data-*` attributes on `<body>` (the
CSP forbids inline scripts), are never cached (they hold the CSRF token),
and answer strangers exactly like missing things.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chatserver.chat import fields, links, queries
from chatserver.chat import inbox as listing
from chatserver.errors import ChatError, ErrorCode
from chatserver.json_types import JSON
from chatserver.web.deps import SignedIn, services, signed_in
from chatserver.web.templating import render_page
from chatserver.web.transcript import routes as transcript_routes


def _page(
    request: Request, name: str, context: JSON | None = None, status_code: int = 200
) -> Response:
    response = render_page(request, name, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def _signed_out(request: Request) -> Response:
    return _page(request, "signed_out.html", status_code=401)


def _not_found(request: Request, who: SignedIn | None) -> Response:
    context = {"who": who} if who is not None else {}
    return _page(request, "not_found.html", context, status_code=404)


async def _base(request: Request, who: SignedIn) -> JSON:
    """What every signed-in page shows: the person, their org and settings."""
    svc = services(request)
    me = await queries.me(svc.chat, who.viewer, who.session.csrf_token)
    return {
        "who": who,
        "me": me,
        "typing_interval_ms": int(svc.settings.typing_interval_seconds * 1000),
        "max_attachments": svc.settings.max_attachments_per_message,
        "max_body_chars": svc.settings.max_body_chars,
        "unsent_upload_days": svc.settings.unsent_upload_days,
    }


async def _conversation(request: Request, who: SignedIn, conversation_id: str) -> JSON:
    """The conversation's summary as the API gives it (with the sentence that
    explains a disabled composer)."""
    return await queries.conversation(services(request).chat, who.viewer, conversation_id)


async def home(request: Request) -> Response:
    who = await signed_in(request)
    if who is None:
        return _page(request, "landing.html")
    if who.viewer.is_staff:
        return RedirectResponse("/inbox", status_code=303)
    chat = services(request).chat
    # The application whose link was opened last is the one the candidate wants.
    for application_id in reversed(who.viewer.application_ids):
        found = await links.conversation_of_application(chat, who.viewer, application_id)
        if found is not None:
            return RedirectResponse(f"/c/{found}", status_code=303)
    return _page(request, "landing.html", {"who": who})


def _signed_in_only(
    page: Callable[[Request, SignedIn], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A page for signed-in people only: anyone else gets the signed-out page
    (401), whatever the page would have shown."""

    @functools.wraps(page)
    async def gated(request: Request) -> Response:
        who = await signed_in(request)
        if who is None:
            return _signed_out(request)
        return await page(request, who)

    return gated


async def _render(request: Request, who: SignedIn, name: str, **context: object) -> Response:
    """A signed-in page: what every one shows (`_base`) and its own values."""
    base = await _base(request, who)
    base.update(context)
    return _page(request, name, base)


@_signed_in_only
async def inbox(request: Request, who: SignedIn) -> Response:
    if not who.viewer.is_staff:
        return RedirectResponse("/", status_code=303)
    return await _render(request, who, "inbox.html", page="inbox", conversation=None)


@_signed_in_only
async def conversation(request: Request, who: SignedIn) -> Response:
    try:
        summary = await _conversation(request, who, request.path_params["conversation_id"])
    except ChatError as exc:
        if exc.code is ErrorCode.NOT_FOUND:
            return _not_found(request, who)
        raise
    if who.viewer.is_staff:
        return await _render(request, who, "inbox.html", page="inbox", conversation=summary)
    return await _render(
        request,
        who,
        "candidate.html",
        page="candidate",
        conversation=summary,
        switch_to=await _candidate_conversations(request, who),
    )


async def _candidate_conversations(request: Request, who: SignedIn) -> list[JSON]:
    """A candidate's conversations when the session holds more than one (a
    second application's link opened in the same browser): the page links
    each, so the first is not lost once the second is open. Newest first,
    as the listing orders them; empty for the usual one."""
    if len(who.viewer.application_ids) < 2:
        return []
    page = await listing.list_conversations(
        services(request).chat, who.viewer, sort="newest", limit=listing.PAGE_MAX
    )
    found: list[JSON] = page["conversations"]
    return found if len(found) > 1 else []


@_signed_in_only
async def application_messages(request: Request, who: SignedIn) -> Response:
    """The application's Messages tab in the host ATS: the conversation alone,
    without the inbox, sized for an iframe."""
    application_id = request.path_params["application_id"]
    chat = services(request).chat
    found = await links.conversation_of_application(chat, who.viewer, application_id)
    if found is None or not who.viewer.is_staff:
        return _not_found(request, who)
    summary = await _conversation(request, who, found)
    return await _render(request, who, "tab.html", page="tab", conversation=summary)


# The messages pages "Back to messages" may return to: this site's own paths
# only, so `?back=` cannot send anyone elsewhere.
_MESSAGES_PAGE = re.compile(r"/(inbox|c/[^/?#\\]+|applications/[^/?#\\]+/messages)(\?[^#]*)?")


def _back_to_messages(request: Request) -> str:
    """Where Settings' "Back to messages" goes: the messages page the person
    came from (the client adds it as `?back=` when they follow a Settings
    link), with its open conversation and filters; else the start page.
    Rendered by the server, so the link is right before any script runs."""
    back = request.query_params.get("back", "")
    return back if _MESSAGES_PAGE.fullmatch(back) else "/"


@_signed_in_only
async def settings_page(request: Request, who: SignedIn) -> Response:
    timezones = sorted(fields.TIMEZONES)
    return await _render(
        request,
        who,
        "settings.html",
        page="settings",
        timezones=timezones,
        back_to_messages=_back_to_messages(request),
    )


routes = [
    Route("/", home, methods=["GET"]),
    Route("/inbox", inbox, methods=["GET"]),
    Route("/c/{conversation_id}", conversation, methods=["GET"]),
    Route("/applications/{application_id}/messages", application_messages, methods=["GET"]),
    Route("/settings", settings_page, methods=["GET"]),
    *transcript_routes,
]
