"""`/dev/mailbox`: the emails the embedded default wrote to the outbox folder.

Without `CHAT_SMTP_URL` the notifier writes each email as an .eml file; this
page lists them and shows each one, so someone running the demo can open a
candidate's email and follow its sign-in link. It is mounted only by
`chatserver demo` (on the embedded default) and answers 404 anywhere else,
because the emails hold sign-in links.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from chatserver.errors import not_found
from chatserver.web.deps import services
from chatserver.web.templating import render_page

# The names OutboxTransport writes; anything else (a path with "/" or "..")
# is refused before it touches the file system.
EML_NAME = re.compile(r"^[0-9T]{15}-[0-9a-f]{16}\.eml$")
# The newest emails are the interesting ones; a long demo keeps the page fast.
LIST_LIMIT = 200
LINK = re.compile(r"https?://[^\s<>\"]+")
# The HTML part is our own template output, shown as its own document: inline
# styles only, no scripts, nothing loaded from elsewhere.
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def _outbox(request: Request) -> Path:
    settings = services(request).settings
    if not settings.dev_routes:
        raise not_found("page")
    return settings.outbox_dir


def _read(folder: Path, name: str) -> EmailMessage:
    path = folder / name
    if not EML_NAME.match(name) or not path.is_file():
        raise not_found("email")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    return str(part.get_content()) if part is not None else ""


def _summary(name: str, message: EmailMessage) -> dict[str, Any]:
    return {
        "name": name,
        "to": str(message["To"] or ""),
        "subject": str(message["Subject"] or ""),
        "date": str(message["Date"] or ""),
    }


async def mailbox(request: Request) -> Response:
    folder = _outbox(request)
    names = sorted((p.name for p in folder.glob("*.eml")), reverse=True)[:LIST_LIMIT]
    emails = [_summary(name, _read(folder, name)) for name in names]
    return render_page(request, "mailbox.html", {"emails": emails, "email": None})


async def email(request: Request) -> Response:
    name = request.path_params["name"]
    message = _read(_outbox(request), name)
    text = _part(message, "plain")
    context = {
        "emails": [],
        "email": {
            **_summary(name, message),
            "from": str(message["From"] or ""),
            "message_id": str(message["Message-ID"] or ""),
            "text": text,
            "links": list(dict.fromkeys(LINK.findall(text))),
        },
    }
    return render_page(request, "mailbox.html", context)


async def email_html(request: Request) -> Response:
    message = _read(_outbox(request), request.path_params["name"])
    return HTMLResponse(_part(message, "html"), headers={"Content-Security-Policy": EMAIL_CSP})


async def email_raw(request: Request) -> Response:
    name = request.path_params["name"]
    folder = _outbox(request)
    _read(folder, name)
    return Response((folder / name).read_bytes(), media_type="message/rfc822")


routes = [
    Route("/dev/mailbox", mailbox, methods=["GET"]),
    Route("/dev/mailbox/{name}", email, methods=["GET"]),
    Route("/dev/mailbox/{name}/html", email_html, methods=["GET"]),
    Route("/dev/mailbox/{name}/raw", email_raw, methods=["GET"]),
]
