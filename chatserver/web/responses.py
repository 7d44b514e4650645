"""The HTTP edge: JSON bodies in, JSON (or the spec's error object) out.

`ChatError` becomes an HTTP status here and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from chatserver.errors import ChatError, ErrorCode, invalid, too_large

HTTP_STATUS = {
    ErrorCode.INVALID: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_ALLOWED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONVERSATION_ENDED: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
}


class BodyNotJson(ChatError):
    """A body that does not parse as JSON: `invalid`, but answered with 400."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.INVALID, "The request body is not valid JSON.")


class OrjsonResponse(JSONResponse):
    """Every JSON answer is one caller's (their messages, their CSRF token,
    a host's data): no cache, shared or the browser's, may keep it."""

    def __init__(self, content: Any, status_code: int = 200, **kwargs: Any) -> None:
        super().__init__(content, status_code, **kwargs)
        self.headers.setdefault("Cache-Control", "private, no-store")

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json(content: Any, status_code: int = 200) -> Response:
    return OrjsonResponse(content, status_code=status_code)


def error_response(exc: ChatError) -> Response:
    status = 400 if isinstance(exc, BodyNotJson) else HTTP_STATUS[exc.code]
    headers = {}
    if exc.retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, -(-exc.retry_after_ms // 1000)))
    return OrjsonResponse({"error": exc.as_dict()}, status_code=status, headers=headers)


async def chat_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChatError)
    return error_response(exc)


log = logging.getLogger(__name__)


async def client_left_handler(request: Request, exc: Exception) -> Response:
    """The client closed the connection before its request's body was read
    (an upload cancelled, a tab closed): nothing to answer, and nothing
    wrong with the server. One quiet line, not an ERROR with a traceback
    that anyone on the internet could repeat to flood the log; nothing was
    stored, as the body was never whole."""
    assert isinstance(exc, ClientDisconnect)
    # %r: the path is decoded, and a %0A in it must not start a line of its own.
    log.info("client left before its request was read: %s %r", request.method, request.url.path)
    return PlainTextResponse("The request was not received whole.", status_code=400)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Routing errors (no such route, wrong method) in the API's error shape;
    pages keep Starlette's plain answers."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api"):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    code = ErrorCode.NOT_FOUND if exc.status_code == 404 else ErrorCode.INVALID
    body = {"error": {"code": code.value, "message": str(exc.detail)}}
    return OrjsonResponse(body, status_code=exc.status_code, headers=exc.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with `too_large` as soon as it passes
    `limit` bytes (whatever Content-Length claims, or without one)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large("The request body is too large.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large("The request body is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, refusing oversize bodies before parsing."""
    raw = await read_body(request, limit)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BodyNotJson() from exc
    if not isinstance(value, dict):
        raise invalid("The request body must be a JSON object.")
    return value


# How `invalid` messages name the JSON types.
TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


def field(body: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    """A typed field of a JSON body, or `invalid` naming what is wrong."""
    if name not in body or body[name] is None:
        if required:
            raise invalid(f"{name} is required.")
        return None
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(f"{name} must be {TYPE_NAMES.get(kind, kind.__name__)}.")
    return value
