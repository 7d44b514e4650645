"""Security headers on every HTTP response (SPEC sections 4 and 6).

Pages run no inline script, so the Content-Security-Policy allows scripts
from this origin only; `frame-ancestors` lists the host ATS origins that
may embed the pages in an iframe (`CHAT_FRAME_ANCESTORS`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatserver.settings import Settings


def websocket_origin(settings: Settings) -> str:
    """This service's own WebSocket origin: ws(s):// and the base URL's host."""
    parts = urlsplit(settings.base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    ancestors = " ".join(("'self'", *settings.frame_ancestors))
    # The pages talk to this origin only: its HTTP API and its /ws socket
    # (named explicitly, since older browsers do not count ws: as 'self').
    connect = f"connect-src 'self' {websocket_origin(settings)}"
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            connect,
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {ancestors}",
        )
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.headers = [
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", content_security_policy(settings).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
