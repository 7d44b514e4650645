"""Signed links, session cookies, CSRF and the WebSocket Origin check.

Everything is signed with itsdangerous using `CHAT_SECRET_KEYS`: the first
key signs, every key verifies, so rotating keys revokes old links once the
old key is dropped from the list. Each kind of token has its own salt, so a
candidate link can never be replayed as a session or a staff link.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import HTTPConnection

from chatserver.clock import Clock, utcnow
from chatserver.errors import ChatError, ErrorCode, unauthorized
from chatserver.settings import Settings

SESSION_COOKIE = "chat_session"
CSRF_HEADER = "x-csrf-token"
STAFF_LINK_SALT = "chat.staff-link"
CANDIDATE_LINK_SALT = "chat.candidate-link"
SESSION_SALT = "chat.session"
# A candidate who opens links for many applications keeps them all in one
# session; the cap keeps the cookie well under the 4 KB browser limit.
MAX_SESSION_APPLICATIONS = 40


@dataclass(frozen=True)
class Session:
    """The decoded session cookie."""

    kind: str  # "staff" | "candidate"
    person_id: str
    csrf_token: str
    application_ids: tuple[str, ...] = ()


def _clocked_signer(clock: Clock) -> type[TimestampSigner]:
    """itsdangerous's timestamp signer on our clock, so link and session
    ages follow the same "now" as the rest of the service (and tests can
    issue a token that is already minutes or days old)."""

    class ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock().timestamp())

    return ClockedSigner


class Signer:
    def __init__(self, settings: Settings, clock: Clock = utcnow) -> None:
        # itsdangerous signs with the *last* key of the list and verifies with
        # all of them; CHAT_SECRET_KEYS lists the signing key first.
        keys = list(reversed(settings.secret_keys))
        signer = _clocked_signer(clock)
        self._settings = settings
        self._staff_links = URLSafeTimedSerializer(keys, salt=STAFF_LINK_SALT, signer=signer)
        self._candidate_links = URLSafeTimedSerializer(
            keys, salt=CANDIDATE_LINK_SALT, signer=signer
        )
        self._sessions = URLSafeTimedSerializer(keys, salt=SESSION_SALT, signer=signer)

    # -- links ---------------------------------------------------------------

    def staff_link_token(self, staff_id: str) -> tuple[str, str]:
        """A token and its id; the id is recorded on use to make it single-use."""
        token_id = secrets.token_urlsafe(16)
        return self._staff_links.dumps({"s": staff_id, "j": token_id}), token_id

    def read_staff_link(self, token: str) -> tuple[str, str]:
        data = _loads(self._staff_links, token, self._settings.staff_link_seconds)
        return str(data["s"]), str(data["j"])

    def candidate_link_token(self, application_id: str) -> str:
        return self._candidate_links.dumps({"a": application_id})

    def read_candidate_link(self, token: str) -> str:
        data = _loads(self._candidate_links, token, self._settings.candidate_link_seconds)
        return str(data["a"])

    # -- sessions ------------------------------------------------------------

    def session_cookie(self, session: Session) -> str:
        return self._sessions.dumps(
            {
                "k": session.kind,
                "p": session.person_id,
                "c": session.csrf_token,
                "a": list(session.application_ids),
            }
        )

    def read_session(self, cookie: str) -> Session:
        max_age = max(
            self._settings.staff_session_seconds, self._settings.candidate_session_seconds
        )
        data = _loads(self._sessions, cookie, max_age)
        kind = str(data["k"])
        if kind == "staff":
            # Staff sessions are shorter than candidates'; check their own age.
            _loads(self._sessions, cookie, self._settings.staff_session_seconds)
        return Session(
            kind=kind,
            person_id=str(data["p"]),
            csrf_token=str(data["c"]),
            application_ids=tuple(str(a) for a in data.get("a", [])),
        )

    def session_max_age(self, kind: str) -> int:
        if kind == "staff":
            return self._settings.staff_session_seconds
        return self._settings.candidate_session_seconds


def _loads(serializer: URLSafeTimedSerializer, token: str, max_age: int) -> dict[str, Any]:
    try:
        data = serializer.loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise unauthorized("This link has expired.") from exc
    except BadSignature as exc:
        raise unauthorized("This link is not valid.") from exc
    if not isinstance(data, dict):
        raise unauthorized("This link is not valid.")
    return data


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def session_from(conn: HTTPConnection, signer: Signer) -> Session | None:
    cookie = conn.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return signer.read_session(cookie)
    except ChatError:
        return None


def check_csrf(conn: HTTPConnection, session: Session) -> None:
    sent = conn.headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent, session.csrf_token):
        raise ChatError(ErrorCode.FORBIDDEN, "Missing or wrong X-CSRF-Token header.")


def origin_allowed(origin: str | None, settings: Settings) -> bool:
    """A missing Origin (non-browser client) is allowed; a foreign one is not."""
    return origin is None or origin.rstrip("/") in settings.origins


def add_application(session: Session, application_id: str) -> Session:
    """The session after a candidate opened one more application's link."""
    ids = [a for a in session.application_ids if a != application_id] + [application_id]
    return Session(
        kind=session.kind,
        person_id=session.person_id,
        csrf_token=session.csrf_token,
        application_ids=tuple(ids[-MAX_SESSION_APPLICATIONS:]),
    )
