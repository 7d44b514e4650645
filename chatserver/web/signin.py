"""Opening a signed link: the token becomes a session cookie, and the
browser is redirected to a URL without it (SPEC section 4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chatserver.chat import actions
from chatserver.errors import ChatError, unauthorized
from chatserver.store import conversations
from chatserver.web.auth import (
    SESSION_COOKIE,
    Session,
    add_application,
    new_csrf_token,
    session_from,
)
from chatserver.web.deps import services
from chatserver.web.templating import render_page


def _with_session(response: Response, request: Request, session: Session) -> Response:
    svc = services(request)
    response.set_cookie(
        SESSION_COOKIE,
        svc.signer.session_cookie(session),
        max_age=svc.signer.session_max_age(session.kind),
        httponly=True,
        secure=svc.settings.secure_cookies,
        # Lax keeps the cookie on the top-level navigation from an email
        # link; an embedding host page on another site needs "none" with
        # HTTPS, which CHAT_BASE_URL=https://… turns on.
        samesite="none" if svc.settings.secure_cookies else "lax",
        path="/",
    )
    return response


def _link_error(request: Request, exc: ChatError) -> Response:
    return render_page(request, "link_error.html", {"message": exc.message}, status_code=401)


async def staff_link(request: Request) -> Response:
    svc = services(request)
    try:
        staff_id, token_id = svc.signer.read_staff_link(request.query_params.get("token", ""))
        await actions.redeem_staff_link(svc.chat, staff_id, token_id)
    except ChatError as exc:
        return _link_error(request, exc)
    session = Session(kind="staff", person_id=staff_id, csrf_token=new_csrf_token())
    return _with_session(RedirectResponse("/inbox", status_code=303), request, session)


async def candidate_link(request: Request) -> Response:
    svc = services(request)
    try:
        application_id = svc.signer.read_candidate_link(request.query_params.get("token", ""))
    except ChatError as exc:
        return _link_error(request, exc)
    async with svc.chat.db.transaction() as conn:
        ctx = await conversations.context_by_application(conn, application_id)
    if ctx is None:
        return _link_error(request, unauthorized("This link is no longer valid."))
    current = session_from(request, svc.signer)
    if (
        current is not None
        and current.kind == "candidate"
        and current.person_id == ctx["candidate_id"]
    ):
        session = add_application(current, application_id)
    else:
        session = Session(
            kind="candidate",
            person_id=ctx["candidate_id"],
            csrf_token=new_csrf_token(),
            application_ids=(application_id,),
        )
    target = f"/c/{ctx['id']}"
    return _with_session(RedirectResponse(target, status_code=303), request, session)


async def sign_out(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


routes = [
    Route("/auth/staff", staff_link, methods=["GET"]),
    Route("/auth/candidate", candidate_link, methods=["GET"]),
    Route("/auth/sign-out", sign_out, methods=["POST"]),
]
