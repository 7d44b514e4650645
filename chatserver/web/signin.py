"""Opening a signed link: the token becomes a session cookie, and the
browser is redirected to a URL without it (SPEC section 4). Signing out
ends the session on the server, not just in this browser."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chatserver.chat import links, sessions
from chatserver.chat.signing import Session, add_application, new_csrf_token
from chatserver.errors import ChatError
from chatserver.roles import Role
from chatserver.web.auth import SESSION_COOKIE, check_csrf, session_from
from chatserver.web.deps import services, signed_in
from chatserver.web.templating import render_page

# The form field that carries the CSRF token of a plain HTML form (the
# pages' Sign out button), where a script would send the X-CSRF-Token header.
CSRF_FIELD = "csrf_token"


def _with_session(response: Response, request: Request, session: Session) -> Response:
    svc = services(request)
    response.set_cookie(
        SESSION_COOKIE,
        svc.signer.session_cookie(session),
        max_age=svc.signer.session_max_age(session.kind),
        httponly=True,
        secure=svc.settings.cookie_secure,
        samesite=svc.settings.cookie_samesite,
        path="/",
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
    return _with_session(RedirectResponse(target, status_code=303), request, session)


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
    Route("/auth/sign-out", sign_out, methods=["POST"]),
]
