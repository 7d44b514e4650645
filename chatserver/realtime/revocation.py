"""Closing one person's sockets on this worker when the domain says so.

Sign-out, the host's removal of a staff user and an application given to
another candidate change the database first, then publish a `disconnect`
event on the person's channel (`person:<kind>:<id>`), which every worker
with a socket of that person already follows (its `PersonRoom`). Each
worker closes those sockets at once; a reconnect is authorised afresh, so
an ended session is refused and a changed access no longer sees what it
lost.

Kept apart from the rooms so that it does not depend on how rooms are
organised: all it needs is the person's local connections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chatserver.chat.events import DisconnectReason, EventType
from chatserver.realtime.connection import Connection

# RFC 6455 close codes: 1008 (policy violation) for a session that ended,
# so the client learns on reconnect that it is signed out; 1012 (service
# restart) when only access changed, so it reconnects and carries on.
CLOSE_CODES = {
    DisconnectReason.SESSION_ENDED: 1008,
    DisconnectReason.ACCESS_CHANGED: 1012,
}


def close_code(event: Mapping[str, Any]) -> int | None:
    """The close code a `disconnect` event asks for, or None for other events."""
    if event.get("type") != EventType.DISCONNECT:
        return None
    try:
        return CLOSE_CODES[DisconnectReason(str(event.get("reason")))]
    except ValueError:
        # An unknown reason from a newer worker: closing is the safe answer.
        return CLOSE_CODES[DisconnectReason.SESSION_ENDED]


def disconnect(connections: Iterable[Connection], event: Mapping[str, Any]) -> bool:
    """Close every connection if `event` is a `disconnect`; whether it was."""
    code = close_code(event)
    if code is None:
        return False
    for conn in list(connections):
        conn.cut_off(code)
    return True
