"""The request side of authentication: the session cookie, CSRF, bearer
keys and the WebSocket Origin check. What is signed and how lives in
`chat/signing.py`."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from chatserver.chat.signing import Session, Signer
from chatserver.errors import ChatError, forbidden, unauthorized
from chatserver.settings import Settings

SESSION_COOKIE = "chat_session"
CSRF_HEADER = "x-csrf-token"


def session_from(conn: HTTPConnection, signer: Signer) -> Session | None:
    cookie = conn.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return signer.read_session(cookie)
    except ChatError:
        return None


def check_csrf(conn: HTTPConnection, session: Session, sent: str | None = None) -> None:
    """The session's CSRF token must come with every mutation: in the
    `X-CSRF-Token` header, or (`sent`) a form field of a plain HTML form."""
    sent = conn.headers.get(CSRF_HEADER, "") or sent or ""
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise forbidden("Missing or wrong X-CSRF-Token header.")


def check_bearer(conn: HTTPConnection, keys: tuple[str, ...], what: str) -> None:
    """`Authorization: Bearer <key>` with one of `keys`, compared in constant time."""
    header = conn.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized(f"Send Authorization: Bearer <{what}>.")
    # Bytes, not str: compare_digest refuses non-ASCII strings.
    sent = key.strip().encode("utf-8", "surrogateescape")
    if not any(hmac.compare_digest(sent, allowed.encode()) for allowed in keys):
        raise unauthorized(f"Unknown {what}.")


def origin_allowed(origin: str | None, settings: Settings) -> bool:
    """A missing Origin (non-browser client) is allowed; a foreign one is not."""
    return origin is None or origin.rstrip("/") in settings.origins
