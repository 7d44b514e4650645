"""What a route needs from the running app: the domain, the signer, and
the signed-in viewer (from the session cookie)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection, Request

from chatserver.broker.base import Broker
from chatserver.chat.identity import Viewer
from chatserver.chat.service import Chat
from chatserver.chat.signing import Session, Signer
from chatserver.errors import unauthorized
from chatserver.realtime.hub import Hub
from chatserver.settings import Settings
from chatserver.web.admission import HandshakeGate
from chatserver.web.auth import check_csrf, session_from
from chatserver.web.responses import read_json


@dataclass
class Services:
    """Everything the app holds for its lifetime, on `app.state.services`."""

    settings: Settings
    chat: Chat
    signer: Signer
    broker: Broker
    hub: Hub
    handshakes: HandshakeGate = field(default_factory=HandshakeGate)


def services(conn: HTTPConnection) -> Services:
    value = conn.app.state.services
    assert isinstance(value, Services)
    return value


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, refused unread past the configured size
    (CHAT_* `max_json_body_bytes`), for every API that takes one."""
    return await read_json(request, services(request).settings.max_json_body_bytes)


@dataclass(frozen=True)
class SignedIn:
    viewer: Viewer
    session: Session


async def signed_in(conn: HTTPConnection) -> SignedIn | None:
    session = session_from(conn, services(conn).signer)
    if session is None:
        return None
    viewer = await viewer_of(conn, session)
    return None if viewer is None else SignedIn(viewer, session)


async def viewer_of(conn: HTTPConnection, session: Session) -> Viewer | None:
    """Who a session is, while it still holds (None once it was ended or the
    person removed)."""
    # Batched with the other checks in flight (a reconnect storm's
    # handshakes): one transaction answers them all, nothing cached.
    return await services(conn).chat.viewers.viewer_for(
        session.kind,
        session.person_id,
        session.application_ids,
        session.generation,
        session.signed_at,
    )


async def require_viewer(conn: HTTPConnection, *, mutation: bool = False) -> SignedIn:
    """The signed-in viewer, or `unauthorized`; mutations also need the CSRF header."""
    who = await signed_in(conn)
    if who is None:
        raise unauthorized()
    if mutation:
        check_csrf(conn, who.session)
    return who
