"""`/email/unsubscribe?token=…`: the link in every email (SPEC section 7,
RFC 8058). No sign-in: the signed token names the person.

- `GET` shows the person's email setting with a form to change it or turn
  emails off. It changes nothing, because mail scanners and link previews
  open links on their own.
- `POST` with `List-Unsubscribe=One-Click` (what a mail client's
  "Unsubscribe" button sends) turns that person's emails off; the page's
  form posts `email_notifications=each|daily|off`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatserver.chat import queries, user_settings
from chatserver.chat.identity import Viewer
from chatserver.chat.policy import Role
from chatserver.errors import invalid
from chatserver.notify.unsubscribe import PATH, Recipient, UnsubscribeLinks
from chatserver.web.deps import services
from chatserver.web.templating import render_page

CHOICES = {
    "each": "an email for each message you haven't read",
    "daily": "one daily summary",
    "off": "no emails",
}
ONE_CLICK = "List-Unsubscribe"


async def _person(request: Request) -> tuple[Recipient, str, str] | None:
    """The token's person, their name and current setting; None if the token
    is not valid or names nobody."""
    svc = services(request)
    recipient = UnsubscribeLinks(svc.settings).read(request.query_params.get("token", ""))
    if recipient is None:
        return None
    found = await queries.email_setting(svc.chat, recipient.kind, recipient.id)
    if found is None:
        return None
    name, current = found
    return recipient, name, current


def _page(request: Request, status_code: int = 200, **context: object) -> Response:
    response = render_page(
        request, "email_settings.html", {"choices": CHOICES, **context}, status_code
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _invalid(request: Request) -> Response:
    return _page(request, 404, invalid=True)


async def show(request: Request) -> Response:
    found = await _person(request)
    if found is None:
        return _invalid(request)
    _, name, current = found
    return _page(request, name=name, current=current, token=request.query_params["token"])


async def change(request: Request) -> Response:
    found = await _person(request)
    if found is None:
        return _invalid(request)
    recipient, name, _ = found
    async with request.form(max_fields=5, max_files=0) as form:
        one_click = form.get(ONE_CLICK) == "One-Click"
        choice = "off" if one_click else str(form.get("email_notifications", "off"))
    if choice not in CHOICES:
        raise invalid("email_notifications must be each, daily or off.")
    svc = services(request)
    viewer = Viewer(kind=Role(recipient.kind), id=recipient.id, name=name, timezone="UTC")
    await user_settings.update_settings(svc.chat, viewer, {"email_notifications": choice})
    return _page(
        request, name=name, current=choice, token=request.query_params["token"], saved=True
    )


routes = [
    Route(PATH, show, methods=["GET"]),
    Route(PATH, change, methods=["POST"]),
]
