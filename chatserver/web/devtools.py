"""`/dev/sign-in`: the demo's sign-in page, mounted only by `chatserver demo`
(like `/dev/mailbox`: anyone who reaches it can sign in as anyone).

Staff links are single-use and expire in five minutes, which is right for a
host ATS and awkward for someone exploring the demo; this page makes a
fresh link for any demo person on each click.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from chatserver.errors import not_found
from chatserver.store import conversations, people
from chatserver.store.tables import applications, candidates, jobs, staff
from chatserver.web.deps import services
from chatserver.web.templating import render_page


async def sign_in_page(request: Request) -> Response:
    svc = services(request)
    async with svc.chat.db.transaction() as conn:
        people = list((await conn.execute(select(staff).order_by(staff.c.name))).mappings())
        apps = list(
            (
                await conn.execute(
                    select(
                        applications.c.id,
                        applications.c.status,
                        candidates.c.name,
                        jobs.c.title,
                    )
                    .join(candidates, candidates.c.id == applications.c.candidate_id)
                    .join(jobs, jobs.c.id == applications.c.job_id)
                    .order_by(candidates.c.name)
                )
            ).mappings()
        )
    return render_page(request, "dev_sign_in.html", {"staff": people, "applications": apps})


async def sign_in_staff(request: Request) -> Response:
    svc = services(request)
    staff_id = request.path_params["staff_id"]
    async with svc.chat.db.transaction() as conn:
        row = await people.get_staff(conn, staff_id)
    if row is None:
        raise not_found("staff user")
    token, _ = svc.signer.staff_link_token(staff_id, int(row["session_generation"]))
    return RedirectResponse(f"/auth/staff?token={token}", status_code=303)


async def sign_in_candidate(request: Request) -> Response:
    svc = services(request)
    application_id = request.path_params["application_id"]
    async with svc.chat.db.transaction() as conn:
        binding = await conversations.application_link_binding(conn, application_id)
    if binding is None:
        raise not_found("application")
    token = svc.signer.candidate_link_token(application_id, binding[0])
    return RedirectResponse(f"/auth/candidate?token={token}", status_code=303)


routes = [
    Route("/dev/sign-in", sign_in_page, methods=["GET"]),
    Route("/dev/sign-in/staff/{staff_id}", sign_in_staff, methods=["GET"]),
    Route("/dev/sign-in/application/{application_id}", sign_in_candidate, methods=["GET"]),
]
