"""A request id on every HTTP request: taken from the reverse proxy's
`X-Request-ID` when it sends a sane one (so nginx's and our lines match),
made up otherwise; echoed in the response and set for every log line written
while the request is served (uvicorn's access line included, which is
written from within the response's `send`)."""

from __future__ import annotations

import re
import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatserver.logs import REQUEST_ID

HEADER = "x-request-id"
# What a proxy may hand us: short and free of anything a log line or a
# header could be confused by.
_ACCEPTED = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_request_id() -> str:
    return secrets.token_hex(8)


def of(scope: Scope) -> str:
    """The proxy's request id when it is a sane one, else a new one."""
    for name, value in scope.get("headers", []):
        if name == HEADER.encode():
            given = str(value.decode("latin-1"))
            if _ACCEPTED.fullmatch(given):
                return given
            break
    return new_request_id()


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = of(scope)
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
