"""Signed links and session cookies: the tokens chatserver hands out.

Everything is signed with itsdangerous using `CHAT_SECRET_KEYS`: the first
key signs, every key verifies, so rotating keys revokes old links once the
old key is dropped from the list. Each kind of token has its own salt, so a
candidate link can never be replayed as a session or a staff link. The web
layer reads them from requests (`web/auth.py`); the notifier and the demo
sign links with the same `Signer`, so this sits below both.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from chatserver.clock import Clock, utcnow
from chatserver.errors import unauthorized
from chatserver.roles import Role
from chatserver.settings import Settings

STAFF_LINK_SALT = "chat.staff-link"
CANDIDATE_LINK_SALT = "chat.candidate-link"
SESSION_SALT = "chat.session"
# A candidate who opens links for many applications keeps them all in one
# session; the cap keeps the cookie well under the 4 KB browser limit.
MAX_SESSION_APPLICATIONS = 40
# How exactly a token knows when it was signed: candidate links and reply
# addresses carry milliseconds, session cookies itsdangerous's whole seconds.
LINK_TIME_PRECISION = timedelta(milliseconds=1)
SESSION_TIME_PRECISION = timedelta(seconds=1)


@dataclass(frozen=True)
class Session:
    """The decoded session cookie.

    `generation` is the person's session generation when it was issued: a
    session is valid only while it still equals the stored one, so sign-out
    and removal (which bump it) end every session issued before.
    """

    kind: Role
    person_id: str
    csrf_token: str
    application_ids: tuple[str, ...] = ()
    generation: int = 0
    # The whole second the cookie was signed (read from it; None while it
    # is being made).
    signed_at: datetime | None = None


@dataclass(frozen=True)
class StaffLink:
    """A verified staff sign-in token."""

    staff_id: str
    token_id: str  # recorded on use: the link works once
    generation: int  # the staff user's session generation at issue
    expires_at: datetime  # the first instant at which it no longer verifies


@dataclass(frozen=True)
class CandidateLink:
    """A verified candidate sign-in token: bound to the candidate and the
    application, and signed at `signed_at` (links signed before the
    candidate was given the application are refused)."""

    application_id: str
    candidate_id: str
    signed_at: datetime


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
        self._clock = clock
        self._settings = settings
        self._staff_links = URLSafeTimedSerializer(keys, salt=STAFF_LINK_SALT, signer=signer)
        self._candidate_links = URLSafeTimedSerializer(
            keys, salt=CANDIDATE_LINK_SALT, signer=signer
        )
        self._sessions = URLSafeTimedSerializer(keys, salt=SESSION_SALT, signer=signer)

    # -- links ---------------------------------------------------------------

    def staff_link_token(self, staff_id: str, generation: int = 0) -> tuple[str, str]:
        """A token and its id; the id is recorded on use to make it single-use."""
        token_id = secrets.token_urlsafe(16)
        return self._staff_links.dumps({"s": staff_id, "j": token_id, "g": generation}), token_id

    def read_staff_link(self, token: str) -> StaffLink:
        max_age = self._settings.staff_link_seconds
        data, signed_at = _loads_timed(self._staff_links, token, max_age)
        try:
            return StaffLink(
                staff_id=str(data["s"]),
                token_id=str(data["j"]),
                generation=_int(data.get("g", 0)),
                # itsdangerous counts whole seconds and accepts an age equal
                # to max_age: the token verifies until the end of that second.
                expires_at=signed_at + timedelta(seconds=max_age + 1),
            )
        except (KeyError, ValueError) as exc:
            raise unauthorized("This link is not valid.") from exc

    def candidate_link_token(self, application_id: str, candidate_id: str) -> str:
        # "t": when it was signed, in milliseconds (itsdangerous's own stamp
        # has whole seconds), to compare with when the candidate got the
        # application: a change and a new link often share a second.
        issued_ms = int(self._clock().timestamp() * 1000)
        return self._candidate_links.dumps({"a": application_id, "c": candidate_id, "t": issued_ms})

    def read_candidate_link(self, token: str) -> CandidateLink:
        max_age = self._settings.candidate_link_seconds
        data, _ = _loads_timed(self._candidate_links, token, max_age)
        try:
            application_id, candidate_id = data["a"], data["c"]
            issued = datetime.fromtimestamp(_int(data["t"]) / 1000, UTC)
            if not isinstance(application_id, str) or not isinstance(candidate_id, str):
                raise ValueError("not a string")
        except (KeyError, ValueError, OverflowError, OSError) as exc:
            # Links from before they were bound to the candidate are refused:
            # they cannot tell whether the application changed hands.
            raise unauthorized("This link is no longer valid.") from exc
        return CandidateLink(application_id, candidate_id, issued)

    # -- sessions ------------------------------------------------------------

    def session_cookie(self, session: Session) -> str:
        return self._sessions.dumps(
            {
                "k": session.kind,
                "p": session.person_id,
                "c": session.csrf_token,
                "a": list(session.application_ids),
                "g": session.generation,
            }
        )

    def read_session(self, cookie: str) -> Session:
        max_age = max(
            self._settings.staff_session_seconds, self._settings.candidate_session_seconds
        )
        data, signed_at = _loads_timed(self._sessions, cookie, max_age)
        try:
            kind = Role(data["k"])
        except (KeyError, ValueError) as exc:
            raise unauthorized() from exc
        if kind == Role.STAFF:
            # Staff sessions are shorter than candidates'; check their own age.
            _loads(self._sessions, cookie, self._settings.staff_session_seconds)
        try:
            return Session(
                kind=kind,
                person_id=str(data["p"]),
                csrf_token=str(data["c"]),
                application_ids=tuple(str(a) for a in data.get("a", [])),
                generation=_int(data.get("g", 0)),
                signed_at=signed_at,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise unauthorized() from exc

    def session_max_age(self, kind: str) -> int:
        if kind == Role.STAFF:
            return self._settings.staff_session_seconds
        return self._settings.candidate_session_seconds


def _loads(serializer: URLSafeTimedSerializer, token: str, max_age: int) -> dict[str, Any]:
    return _loads_timed(serializer, token, max_age)[0]


def _loads_timed(
    serializer: URLSafeTimedSerializer, token: str, max_age: int
) -> tuple[dict[str, Any], datetime]:
    """The token's payload and the (whole) second it was signed."""
    try:
        data, signed_at = serializer.loads(token, max_age=max_age, return_timestamp=True)
    except SignatureExpired as exc:
        raise unauthorized("This link has expired.") from exc
    except BadSignature as exc:
        raise unauthorized("This link is not valid.") from exc
    if not isinstance(data, dict) or not isinstance(signed_at, datetime):
        raise unauthorized("This link is not valid.")
    return data, signed_at


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    return value


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def add_application(session: Session, application_id: str) -> Session:
    """The session after a candidate opened one more application's link."""
    ids = [a for a in session.application_ids if a != application_id] + [application_id]
    return Session(
        kind=session.kind,
        person_id=session.person_id,
        csrf_token=session.csrf_token,
        application_ids=tuple(ids[-MAX_SESSION_APPLICATIONS:]),
        generation=session.generation,
    )
