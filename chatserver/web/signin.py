"""Opening a signed link: the token becomes a session cookie, and the
browser is redirected to a URL without it (SPEC section 4). Signing out
ends the session on the server, not just in this browser.

A candidate link opened in a browser signed in as staff (a recruiter
checking a link a candidate forwarded, or clicking the wrong one) does not
silently turn them into the candidate, who could then be written as: the
candidate's session waits in a cookie of its own, sent to `/auth/switch`
only, and the page there asks whom to continue as.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chatserver.chat import links, sessions
from chatserver.chat.signing import Session, add_application, new_csrf_token
from chatserver.errors import ChatError
from chatserver.roles import Role
from chatserver.web.auth import SESSION_COOKIE, check_csrf, session_from
from chatserver.web.deps import services, signed_in, viewer_of
from chatserver.web.templating import render_page

# The form field that carries the CSRF token of a plain HTML form (the
# pages' Sign out button), where a script would send the X-CSRF-Token header.
CSRF_FIELD = "csrf_token"
# The candidate session that waits for a staff member's choice, and how long.
SWITCH_COOKIE = "chat_switch"
SWITCH_PATH = "/auth/switch"
SWITCH_SECONDS = 600
# Where the choice may lead: a conversation page of this site.
_CONVERSATION_PAGE = re.compile(r"/c/[^/?#\\]+")


def _with_session(
    response: Response,
    request: Request,
    session: Session,
    *,
    cookie: str = SESSION_COOKIE,
    max_age: int | None = None,
    path: str = "/",
) -> Response:
    svc = services(request)
    response.set_cookie(
        cookie,
        svc.signer.session_cookie(session),
        max_age=svc.signer.session_max_age(session.kind) if max_age is None else max_age,
        httponly=True,
        secure=svc.settings.cookie_secure,
        samesite=svc.settings.cookie_samesite,
        path=path,
    )
    return response


def _link_error(request: Request, exc: ChatError) -> Response:
    return render_page(request, "link_error.html", {"message": exc.message}, status_code=401)


async def staff_link(request: Request) -> Response:
    svc = services(request)
    try:
        link = svc.signer.read_staff_link(request.query_params.get("token", ""))
        await links.redeem_staff_link(
            svc.chat, link.staff_id, link.token_id, link.generation, link.expires_at
        )
    except ChatError as exc:
        return _link_error(request, exc)
    session = Session(
        kind=Role.STAFF,
        person_id=link.staff_id,
        csrf_token=new_csrf_token(),
        generation=link.generation,
    )
    return _with_session(RedirectResponse("/inbox", status_code=303), request, session)


async def candidate_link(request: Request) -> Response:
    svc = services(request)
    try:
        link = svc.signer.read_candidate_link(request.query_params.get("token", ""))
        entry = await links.redeem_candidate_link(svc.chat, link)
    except ChatError as exc:
        return _link_error(request, exc)
    candidate_id, generation = entry.candidate_id, entry.generation
    current = session_from(request, svc.signer)
    if (
        current is not None
        and current.kind == Role.CANDIDATE
        and current.person_id == candidate_id
        and current.generation == generation
    ):
        session = add_application(current, link.application_id)
    else:
        session = Session(
            kind=Role.CANDIDATE,
            person_id=candidate_id,
            csrf_token=new_csrf_token(),
            application_ids=(link.application_id,),
            generation=generation,
        )
    target = f"/c/{entry.conversation_id}"
    if current is not None and current.kind == Role.STAFF:
        asking = RedirectResponse(f"{SWITCH_PATH}?{urlencode({'to': target})}", status_code=303)
        return _with_session(
            asking,
            request,
            session,
            cookie=SWITCH_COOKIE,
            max_age=SWITCH_SECONDS,
            path=SWITCH_PATH,
        )
    return _with_session(RedirectResponse(target, status_code=303), request, session)


def _waiting(request: Request) -> Session | None:
    cookie = request.cookies.get(SWITCH_COOKIE)
    if not cookie:
        return None
    try:
        return services(request).signer.read_session(cookie)
    except ChatError:
        return None


async def switch_page(request: Request) -> Response:
    """Whom to continue as: the staff member signed in here, or the
    candidate whose link was opened."""
    waiting = _waiting(request)
    candidate = None if waiting is None else await viewer_of(request, waiting)
    if waiting is None or candidate is None:
        return _expired(request)
    who = await signed_in(request)
    context = {
        "staff_name": who.viewer.name if who is not None else None,
        "candidate_name": candidate.name,
        "to": request.query_params.get("to", ""),
        "csrf_token": waiting.csrf_token,
    }
    return _not_kept(render_page(request, "switch.html", context))


def _expired(request: Request) -> Response:
    """A choice that can no longer be made: made already (in another tab,
    or before Back), or the link opened again since (the later page holds
    the choice), or left longer than SWITCH_SECONDS. Said, not ignored; a
    later page's waiting session stays for that page."""
    return _not_kept(render_page(request, "switch.html", {"expired": True}, status_code=409))


def _not_kept(response: Response) -> Response:
    # Back must ask again rather than show a choice that no longer holds.
    response.headers["Cache-Control"] = "no-store"
    return response


async def switch(request: Request) -> Response:
    """The choice: continue as the candidate (their session replaces the
    staff one) or stay. Either way the waiting session is dropped."""
    form = await request.form(max_files=0, max_fields=5)
    waiting = _waiting(request)
    sent = form.get(CSRF_FIELD)
    if (
        waiting is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), waiting.csrf_token.encode())
    ):
        return _expired(request)
    response: Response
    if form.get("continue_as") == "candidate":
        to = form.get("to")
        target = to if isinstance(to, str) and _CONVERSATION_PAGE.fullmatch(to) else "/"
        response = _with_session(RedirectResponse(target, status_code=303), request, waiting)
    else:
        response = RedirectResponse("/inbox", status_code=303)
    response.delete_cookie(SWITCH_COOKIE, path=SWITCH_PATH)
    return response


async def sign_out(request: Request) -> Response:
    """End this person's sessions server-side (CSRF-checked: a foreign page
    must not be able to sign someone out) and drop the cookie."""
    who = await signed_in(request)
    if who is not None:
        sent = request.headers.get("x-csrf-token")
        if not sent and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            form = await request.form(max_files=0, max_fields=5)
            field = form.get(CSRF_FIELD)
            sent = field if isinstance(field, str) else None
        check_csrf(request, who.session, sent)
        await sessions.sign_out(services(request).chat, who.session.kind, who.session.person_id)
    response = RedirectResponse("/", status_code=303)
    if SESSION_COOKIE in request.cookies:
        # Only a cookie that came with the request is dropped: a foreign
        # page's form arrives without it (SameSite=Lax), and its answer must
        # not delete the browser's session either.
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/auth/staff", staff_link, methods=["GET"]),
    Route("/auth/candidate", candidate_link, methods=["GET"]),
    Route(SWITCH_PATH, switch_page, methods=["GET"]),
    Route(SWITCH_PATH, switch, methods=["POST"]),
    Route("/auth/sign-out", sign_out, methods=["POST"]),
]
