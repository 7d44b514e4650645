"""The one source of "now", injectable so tests can move time (digests)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Aware UTC: SQLModel's datetime columns refuse naive values."""
    return datetime.now(UTC)


def wire_time(at: datetime) -> str:
    """UTC on the wire, as ISO 8601 with millisecond precision and a Z."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def as_utc(at: datetime) -> datetime:
    """A stored time as aware UTC: the databases hand times back without
    their zone, and every time stored is UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
