"""The small, named set of errors of the spec (SPEC sections 4, 5 and 5a).

The domain raises `ChatError` with one of these codes; the web layer turns
it into an HTTP status or a WebSocket error frame in exactly one place each
(`web/responses.py`, `web/ws.py`). Nothing below the web layer knows about
status codes.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_ALLOWED = "not_allowed"
    NOT_FOUND = "not_found"
    CONVERSATION_ENDED = "conversation_ended"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class ChatError(Exception):
    """A refusal the client can act on, with a human-readable message."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code.value, "message": self.message}
        if self.retry_after_ms is not None:
            body["retry_after_ms"] = self.retry_after_ms
        return body

    def __repr__(self) -> str:
        return f"ChatError({self.code.value!r}, {self.message!r})"


def invalid(message: str) -> ChatError:
    return ChatError(ErrorCode.INVALID, message)


def not_found(what: str = "conversation") -> ChatError:
    """The single answer for missing things *and* other tenants' things."""
    return ChatError(ErrorCode.NOT_FOUND, f"No such {what}.")


def forbidden(message: str) -> ChatError:
    return ChatError(ErrorCode.FORBIDDEN, message)


def too_large(message: str) -> ChatError:
    return ChatError(ErrorCode.TOO_LARGE, message)


def unauthorized(message: str = "Sign in first.") -> ChatError:
    return ChatError(ErrorCode.UNAUTHORIZED, message)


def unavailable(message: str = "The service is temporarily unavailable; try again.") -> ChatError:
    return ChatError(ErrorCode.UNAVAILABLE, message)
