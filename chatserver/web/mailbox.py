"""`/dev/mailbox`: the emails the embedded default wrote to the outbox folder.

Without `CHAT_SMTP_URL` the notifier writes each email as an .eml file; this
page lists them and shows each one, so someone running the demo can open a
candidate's email and follow its sign-in link. An email with a reply
address (`CHAT_REPLY_DOMAIN`; the demo sets one) offers "reply to this
email": the page writes the reply a mail program would (From the
recipient, to the Reply-To, the original quoted below) and hands it to
the same function as `chatserver mail-in` and the webhook. It is mounted
only by `chatserver demo` (on the embedded default) and answers 404
anywhere else, because the emails hold sign-in links.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from chatserver.chat import email_replies
from chatserver.errors import ChatError, forbidden, not_found
from chatserver.web.deps import services
from chatserver.web.templating import render_page

# The names OutboxTransport writes; anything else (a path with "/" or "..")
# is refused before it touches the file system.
EML_NAME = re.compile(r"^[0-9T]{15}-[0-9a-f]{16}\.eml$")
# The newest emails are the interesting ones; a long demo keeps the page fast.
LIST_LIMIT = 200
LINK = re.compile(r"https?://[^\s<>\"]+")
# The email page's own referrer policy, instead of every other response's
# `no-referrer`: under `no-referrer` Chromium sends the reply form's POST
# with `Origin: null`, which `reply_to_email` must refuse like any origin
# but ours. `same-origin` has the browser name the page's origin on a request
# to this origin (the form's) and still nothing on one that leaves it; the
# page's address holds no token anyway.
PAGE_REFERRER_POLICY = "same-origin"
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
            "reply_to": str(message["Reply-To"] or ""),
            "text": text,
            "links": list(dict.fromkeys(LINK.findall(text))),
        },
        "replied": request.query_params.get("replied", "")[:REPLIED_CHARS],
    }
    response = render_page(request, "mailbox.html", context)
    response.headers["Referrer-Policy"] = PAGE_REFERRER_POLICY
    return response


def written_reply(original: EmailMessage, text: str) -> EmailMessage:
    """The reply a mail program would send: from the recipient to the
    Reply-To, the original quoted below the new text (which the server
    strips, as it does Gmail's)."""
    reply = EmailMessage()
    reply["From"] = str(original["To"])
    reply["To"] = str(original["Reply-To"])
    reply["Subject"] = f"Re: {' '.join(str(original['Subject'] or '').split())}"
    reply["Message-ID"] = make_msgid(domain="mailbox.localhost")
    reply["In-Reply-To"] = str(original["Message-ID"] or "")
    quoted = "\n".join(f"> {line}" for line in _part(original, "plain").splitlines())
    reply.set_content(f"{text}\n\nOn {original['Date']}, {original['From']} wrote:\n{quoted}\n")
    return reply


OUTCOME_TEXT = {
    email_replies.Outcome.TAKEN: "Your reply was posted in the conversation.",
    email_replies.Outcome.DUPLICATE: "This reply had been posted already.",
    email_replies.Outcome.DROPPED: "The reply looked automatic and was dropped.",
    email_replies.Outcome.EXPLAINED: "Your reply was not posted; an email explains why.",
}
REPLIED_CHARS = 300


async def reply_to_email(request: Request) -> Response:
    """POST: post the form's text as a reply to this email. Only from the
    email page: a browser names its origin (`PAGE_REFERRER_POLICY`), and any
    other origin, `null` included, is refused (a cross-site form)."""
    settings = services(request).settings
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != settings.base_origin:
        raise forbidden("Replies are posted from the mailbox page only.")
    name = request.path_params["name"]
    original = _read(_outbox(request), name)
    if not original["Reply-To"]:
        raise not_found("reply address")
    form = await request.form(max_files=0, max_fields=2)
    text = form.get("text")
    if not isinstance(text, str) or not text.strip():
        outcome = "Write something to reply with."
    else:
        try:
            result = await email_replies.take_mail(
                services(request).chat, written_reply(original, text).as_bytes()
            )
            outcome = OUTCOME_TEXT[result.outcome]
        except ChatError as exc:
            outcome = f"Refused: {exc.message}"
    target = f"/dev/mailbox/{name}?replied={quote(outcome)}#reply"
    return RedirectResponse(target, status_code=303)


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
    Route("/dev/mailbox/{name}/reply", reply_to_email, methods=["POST"]),
]
