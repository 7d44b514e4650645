"""`/ws`: the WebSocket protocol of SPEC section 5.

Each socket has one reader task (the socket's own task: frames in →
domain calls → answers). Frames out wait in the connection's bounded
outbox until the end of the event loop's step, then are written together
(`_Pump`): at once where the server's protocol can take them
(`web/ws_protocol.py`), else by a writer task that drains the outbox
through ASGI, waiting for a slow reader; when the socket can take no
more, reading stops.
Answers to the client's own frames go through the same outbox as fan-out,
so frames leave in the order they were produced. Errors become one `error`
frame each and the connection stays open, except for an unauthenticated
client (1008), one whose session cannot be checked because the database
is down (1013), one over the connection cap (1013), a frame over the size
limit (1009) and a client too slow to keep up (1013). A worker already
checking as many handshakes as it can refuses more with HTTP 503 before
any work (`web/admission.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from chatserver.chat import message_send, reads, wire
from chatserver.chat.send_request import SendRequest, SendResult
from chatserver.errors import ChatError, ErrorCode, unauthorized, unavailable
from chatserver.logs import REQUEST_ID
from chatserver.realtime.connection import Connection
from chatserver.realtime.hub import CLOSE_POLICY, CLOSE_TRY_LATER, Hub
from chatserver.web import request_id
from chatserver.web.admission import busy
from chatserver.web.auth import origin_allowed
from chatserver.web.deps import Services, services, signed_in
from chatserver.web.ws_protocol import WRITE_TEXTS

log = logging.getLogger(__name__)

PATH = "/ws"
# RFC 6455: the message was too big to process.
CLOSE_TOO_BIG = 1009
# A close frame queued behind a full TCP buffer is never written to a client
# that reads nothing; after this the handler stops waiting and lets the
# server drop the socket.
CLOSE_GRACE_SECONDS = 1.0
# Sends one socket may have waiting for their commit at once: enough to keep
# a busy client's group commits full, few enough that one socket cannot
# flood the send queue (its rate limit applies on top).
MAX_PIPELINED_SENDS = 32
# UTF-8 spends at most this many bytes on one character.
MAX_UTF8_BYTES_PER_CHAR = 4


async def websocket_endpoint(websocket: WebSocket) -> None:
    svc = services(websocket)
    # The handshake's headers and cookies are read through a view of their
    # own, not cached on `websocket`, so the open socket can let go of them.
    handshake = HTTPConnection(websocket.scope)
    if not origin_allowed(handshake.headers.get("origin"), svc.settings):
        # Closing before accepting refuses the handshake (HTTP 403).
        await websocket.close(code=CLOSE_POLICY)
        return
    async with svc.handshakes.admit() as admitted:
        if not admitted:
            await websocket.send_denial_response(busy())
            return
        conn = await _open(websocket, handshake, svc)
    del handshake
    if conn is None:
        return
    _forget_handshake(websocket.scope)
    try:
        await _serve(websocket, conn, svc)
    finally:
        svc.hub.disconnect(conn)
    await _close(websocket, conn.close_code)


async def _open(
    websocket: WebSocket, handshake: HTTPConnection, svc: Services
) -> Connection | None:
    """Check the session, accept, and take a connection slot; None once the
    socket was refused (and closed)."""
    refusal: ChatError | None = None
    try:
        who = await signed_in(handshake)
    except ChatError as exc:
        who, refusal = None, exc
    except Exception:
        log.exception("checking a socket's session failed")
        who, refusal = None, unavailable()
    await websocket.accept()
    if who is None:
        refusal = refusal or unauthorized()
        # 1008 tells a client to stop and sign in again: only for a session
        # that is really not valid. A session that could not be checked (the
        # database is down) is told to come back later (1013), so the
        # client backs off and reconnects on its own.
        policy = refusal.code is ErrorCode.UNAUTHORIZED
        await _refuse(websocket, refusal, CLOSE_POLICY if policy else CLOSE_TRY_LATER)
        return None
    try:
        return await svc.hub.connect(who.viewer)
    except ChatError as exc:
        await _refuse(websocket, exc, CLOSE_TRY_LATER)
        return None


def _forget_handshake(scope: Scope) -> None:
    """An open socket never reads its handshake's headers again (the
    session, origin and request id were taken from them): thousands of
    idle sockets would otherwise keep about a KiB each (issue 10 item 5)."""
    scope["headers"] = []


async def _serve(websocket: WebSocket, conn: Connection, svc: Services) -> None:
    """Read in this task (the socket's own). A writer task runs only while
    the outbox holds frames (`Outbox.wake`); when the socket can take no
    more (it is gone, or the client was cut off), reading stops too."""
    reader = asyncio.current_task()
    assert reader is not None
    reading = True
    stopped = False

    def stop_reading() -> None:
        nonlocal stopped
        if reading and not stopped:
            stopped = True
            reader.cancel()

    pump = _Pump(websocket, conn)
    conn.stop_reading = stop_reading
    conn.outbox.wake = pump.wake
    if len(conn.outbox):
        pump.wake()
    try:
        await _read(websocket, conn, svc)
    except asyncio.CancelledError:
        if not stopped:
            raise  # cancelled from outside (server shutdown): not ours to absorb
        reader.uncancel()
    finally:
        reading = False
        writer = conn.writer
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            # A writer cancelled before its first step never ran its
            # `finally`: let go of it here, or the connection and the
            # cancelled task (whose traceback holds the connection) would
            # be a cycle for the collector.
            conn.writer = None
        conn.unhook()


class _Pump:
    """Gets the outbox's frames onto the socket, all those queued in one
    step of the event loop together, right after it (`call_soon`): one
    write, without a task, where the protocol offers `write_texts` and the
    socket can take them now; otherwise a writer task (`_write`) sends them
    through ASGI, waiting for a slow reader, until the outbox is empty.
    A worker writes most frames the first way: no task per frame, and one
    system call for a message and its bell to the same socket."""

    __slots__ = ("_conn", "_due", "_websocket", "_write_now")

    def __init__(self, websocket: WebSocket, conn: Connection) -> None:
        self._websocket = websocket
        self._conn = conn
        offered = (websocket.scope.get("extensions") or {}).get(WRITE_TEXTS) or {}
        self._write_now: Callable[[Sequence[str]], bool] | None = offered.get("write")
        # A flush is scheduled and has not run yet.
        self._due = False

    def wake(self) -> None:
        if not self._due and self._conn.writer is None:
            self._due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._due = False
        conn = self._conn
        if conn.writer is not None or conn.outbox.closed:
            return
        if self._write_now is not None:
            try:
                if conn.outbox.flush(self._write_now):
                    return
            except Exception:
                # As in `_write`: the socket is gone.
                conn.outbox.close()
                conn.stop_reading()
                return
        if len(conn.outbox):
            conn.writer = asyncio.create_task(_write(self._websocket, conn))


async def _write(websocket: WebSocket, conn: Connection) -> None:
    """Send what the outbox holds, then end."""
    try:
        while (frame := conn.outbox.take()) is not None:
            await websocket.send_text(frame)
    except Exception:
        # The socket is gone (WebSocketDisconnect, OSError, or Starlette's
        # RuntimeError after a close): nothing more will be written to it.
        conn.outbox.close()
    finally:
        conn.writer = None
        if conn.outbox.closed:
            conn.stop_reading()


async def _read(websocket: WebSocket, conn: Connection, svc: Services) -> None:
    limit = svc.settings.max_frame_bytes
    # Made at the first send: an empty set is 216 bytes, and most sockets
    # of a worker are idle.
    sends: set[asyncio.Future[SendResult]] | None = None
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data: str | bytes | None = message.get("text")
        if data is None:
            data = message.get("bytes")
        if data is None:
            continue
        if _too_large(data, limit):
            conn.close_code = CLOSE_TOO_BIG
            return
        try:
            frame = wire.decode(data)
        except wire.InvalidFrame as exc:
            await conn.outbox.put(wire.error_frame(exc, exc.client_id))
            continue
        if isinstance(frame, wire.Send):
            # Sends are pipelined: each is queued here, in frame order (so
            # they reach the send queue and its rate limit in order), and
            # answered by a callback when its group commit settles it, so
            # one socket can have several in flight, none with a task.
            request = await _prepare(conn, svc, frame)
            if request is None:
                continue
            if sends is None:
                sends = set()
            if len(sends) >= MAX_PIPELINED_SENDS:
                await asyncio.wait(sends, return_when=asyncio.FIRST_COMPLETED)
            svc.chat.sends.queue(request)
            sends.add(request.future)
            request.future.add_done_callback(_Ack(conn, frame.client_id, sends, svc.hub))
        else:
            # The error answering a subscribe names its conversation, so the
            # page can tell which view it is about (no longer available, …).
            about = frame.conversation if isinstance(frame, wire.Subscribe) else None
            await _answer(conn, _dispatch(conn, svc, frame), about)


def _too_large(data: str | bytes, limit: int) -> bool:
    """Whether the frame's UTF-8 size exceeds `limit`, encoding only when unsure."""
    if len(data) > limit:
        return True
    if isinstance(data, bytes) or len(data) * MAX_UTF8_BYTES_PER_CHAR <= limit:
        return False
    return len(data.encode("utf-8", "surrogatepass")) > limit


async def _prepare(conn: Connection, svc: Services, frame: wire.Send) -> SendRequest | None:
    """The send checked, or None once its error is queued."""
    try:
        return message_send.prepare_send(
            svc.chat,
            conn.viewer,
            frame.conversation,
            frame.client_id,
            frame.body,
            frame.attachments,
        )
    except ChatError as exc:
        error = exc
    except Exception:
        log.exception("checking a send failed")
        error = unavailable()
    await conn.outbox.put(wire.error_frame(error, frame.client_id))
    return None


class _Ack:
    """Answers one send once its future is settled: the `ack`, or the
    `error` it was refused or failed with. A callback, not a task: one
    per message sent. Offered, not waited for: a client whose outbox is
    full with its own answers reads too slowly, and is cut off (SPEC 3.5).

    The ack carries the stored message, so the hub is told that this
    socket has it: the socket's own `message` copy, which clients drop by
    seq, is then not sent (SPEC 5: the sending connection *may* get it).
    """

    __slots__ = ("_client_id", "_conn", "_hub", "_sends")

    def __init__(
        self,
        conn: Connection,
        client_id: str,
        sends: set[asyncio.Future[SendResult]],
        hub: Hub,
    ) -> None:
        self._conn = conn
        self._client_id = client_id
        self._sends = sends
        self._hub = hub

    def __call__(self, future: asyncio.Future[SendResult]) -> None:
        self._sends.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        message = None
        if exc is None:
            message = future.result().message
            answer = wire.ack_frame(self._client_id, message)
        elif isinstance(exc, ChatError):
            answer = wire.error_frame(exc, self._client_id)
        else:
            log.error("a send failed", exc_info=exc)
            answer = wire.error_frame(unavailable(), self._client_id)
        if not self._conn.push(answer):
            self._hub.kick(self._conn)
        elif message is not None:
            self._hub.acknowledged(self._conn, message["conversation"], message["seq"])


async def _answer(
    conn: Connection, work: Awaitable[str | None], conversation: str | None = None
) -> None:
    """Run one frame's work and queue its answer, if it has one; an error
    names `conversation`, when given."""
    try:
        answer = await work
    except ChatError as exc:
        answer = wire.error_frame(exc, conversation=conversation)
    except Exception:
        log.exception("frame handling failed")
        answer = wire.error_frame(unavailable(), conversation=conversation)
    if answer is not None:
        await conn.outbox.put(answer)


async def _dispatch(conn: Connection, svc: Services, frame: wire.ClientFrame) -> str | None:
    """Every frame but a send (which `_prepare` and `_submit` handle)."""
    viewer = conn.viewer
    # Sends have the per-person limit; everything else the socket's.
    svc.hub.admit(conn)
    match frame:
        case wire.Subscribe():
            await svc.hub.subscribe(conn, frame.conversation, frame.after)
        case wire.Unsubscribe():
            svc.hub.unsubscribe(conn, frame.conversation)
        case wire.Read():
            await reads.mark_read(svc.chat, viewer, frame.conversation, frame.seq)
        case wire.Typing():
            await svc.hub.typing(conn, frame.conversation)
        case wire.Inbox():
            svc.hub.follow_inbox(conn)
        case wire.Ping():
            return wire.PONG
    return None


async def _refuse(websocket: WebSocket, error: ChatError, code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(wire.error_frame(error))
        await websocket.close(code=code)


async def _close(websocket: WebSocket, code: int | None) -> None:
    """Close with the server's reason, if it has one and the socket is still up."""
    if code is None or websocket.application_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        await asyncio.wait_for(websocket.close(code=code), CLOSE_GRACE_SECONDS)


def is_socket(scope: Scope) -> bool:
    """Whether a request is for `/ws` (under the app's root path, if any)."""
    if scope["type"] != "websocket":
        return False
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    return (path[len(root) :] if root and path.startswith(root) else path) == PATH


async def serve_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """`/ws` outside the middleware stack and the router (`app.py`'s
    `ChatApp`): their frames and closures would otherwise live as long as
    the socket, several KiB for each of thousands of idle connections, for
    nothing (no HTTP response headers, no exception pages). What the stack
    gives a socket, a request id for its log lines, is set here."""
    token = REQUEST_ID.set(request_id.of(scope))
    try:
        await websocket_endpoint(WebSocket(scope, receive=receive, send=send))
    finally:
        REQUEST_ID.reset(token)


# The route stays in the routing table (url_path_for, and the same answer
# should a request ever reach the router); `ChatApp` serves it directly.
routes = [WebSocketRoute(PATH, websocket_endpoint)]
