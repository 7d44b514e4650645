"""`/dev/sign-in`: the demo's sign-in page, mounted only by `chatserver demo`
(like `/dev/mailbox`: anyone who reaches it can sign in as anyone).

Staff links are single-use and expire in five minutes, which is right for a
host ATS and awkward for someone exploring the demo; this page makes a
fresh link for any demo person on each click.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chatserver.chat import queries
from chatserver.errors import not_found
from chatserver.web.deps import services
from chatserver.web.templating import render_page


async def sign_in_page(request: Request) -> Response:
    staff, applications = await queries.everyone(services(request).chat)
    return render_page(request, "dev_sign_in.html", {"staff": staff, "applications": applications})


async def sign_in_staff(request: Request) -> Response:
    svc = services(request)
    staff_id = request.path_params["staff_id"]
    generation = await queries.staff_link_generation(svc.chat, staff_id)
    if generation is None:
        raise not_found("staff user")
    token, _ = svc.signer.staff_link_token(staff_id, generation)
    return RedirectResponse(f"/auth/staff?token={token}", status_code=303)


async def sign_in_candidate(request: Request) -> Response:
    svc = services(request)
    application_id = request.path_params["application_id"]
    candidate_id = await queries.application_candidate(svc.chat, application_id)
    if candidate_id is None:
        raise not_found("application")
    token = svc.signer.candidate_link_token(application_id, candidate_id)
    return RedirectResponse(f"/auth/candidate?token={token}", status_code=303)


routes = [
    Route("/dev/sign-in", sign_in_page, methods=["GET"]),
    Route("/dev/sign-in/staff/{staff_id}", sign_in_staff, methods=["GET"]),
    Route("/dev/sign-in/application/{application_id}", sign_in_candidate, methods=["GET"]),
]
