"""The application factory: routes, middleware and the lifespan that owns
the database, the broker, the send queue, the realtime hub and (in the
embedded default) the notifier."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from chatserver.broker import broker_from_url
from chatserver.chat.events import Events
from chatserver.chat.service import Chat
from chatserver.chat.signing import Signer
from chatserver.clock import Clock, utcnow
from chatserver.errors import ChatError
from chatserver.notify.worker import Notifier
from chatserver.realtime.hub import Hub
from chatserver.settings import Settings
from chatserver.store.db import Database
from chatserver.web import (
    api_host,
    api_session,
    attachments,
    devtools,
    mailbox,
    ops,
    pages,
    signin,
    unsubscribe,
    ws,
)
from chatserver.web.deps import Services
from chatserver.web.headers import SecurityHeaders
from chatserver.web.request_id import RequestId
from chatserver.web.responses import chat_error_handler, client_left_handler, http_error_handler
from chatserver.web.templating import STATIC_DIR

log = logging.getLogger(__name__)


class ChatApp(Starlette):
    """The Starlette app, with `/ws` served past the middleware stack
    (`web/ws.py`'s `serve_socket`): an idle socket then costs its own state
    and the server's, not a frame per middleware for hours."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if ws.is_socket(scope):
            scope["app"] = self
            await ws.serve_socket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, *, clock: Clock = utcnow, run_notifier: bool | None = None
) -> Starlette:
    """Build the ASGI app. The notifier runs in-process in the embedded
    default (one process, nothing else to start) unless told otherwise."""
    settings = settings or Settings.from_env()
    settings.validate()
    in_process_notifier = settings.embedded if run_notifier is None else run_notifier

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = Database.from_settings(settings)
        broker = broker_from_url(settings.redis_url, prefix=settings.redis_prefix)
        await broker.connect()
        chat = Chat(settings, db, Events(broker), clock)
        await chat.start()
        hub = Hub(chat, broker, settings)
        await hub.start()
        app.state.services = Services(
            settings=settings, chat=chat, signer=Signer(settings, clock), broker=broker, hub=hub
        )
        notifier = Notifier(chat, settings, hub.presence) if in_process_notifier else None
        notifier_task = asyncio.create_task(notifier.run_forever()) if notifier else None
        try:
            yield
        finally:
            if notifier is not None and notifier_task is not None:
                # Finish the email in flight rather than cancel mid-send.
                notifier.stop()
                await asyncio.gather(notifier_task, return_exceptions=True)
            await hub.stop()
            await chat.stop()
            await broker.disconnect()
            await db.dispose()

    # /dev/* signs anyone in as anyone (the sign-in page, and the mailbox's
    # candidate links): only `chatserver demo` mounts it, never `serve`.
    dev_routes = [*devtools.routes, *mailbox.routes] if settings.dev_routes else []
    routes = [
        *dev_routes,
        *api_host.routes,
        *api_session.routes,
        *attachments.routes,
        *signin.routes,
        *unsubscribe.routes,
        *ws.routes,
        *ops.routes,
        *pages.routes,
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = ChatApp(
        routes=routes,
        middleware=[Middleware(RequestId), Middleware(SecurityHeaders, settings=settings)],
        exception_handlers={
            ChatError: chat_error_handler,
            HTTPException: http_error_handler,
            ClientDisconnect: client_left_handler,
        },
        lifespan=lifespan,
    )
    # One URL per resource. Starlette would otherwise answer a path with a
    # stray trailing slash (`/api/messages/x%2F`, an id ending in an encoded
    # "/") with an empty 307 to the other spelling, even for a DELETE; the
    # API answers such paths `404 not_found` in its error shape instead.
    app.router.redirect_slashes = False
    return app
