"""Every kind of id chatserver accepts, and what a well-formed one looks like.

Host ids (organisations, staff, jobs, applications, candidates) are the
host's and appear in URLs and channel names, so they keep to a safe
alphabet. Our own ids (conversations, messages, attachments) are short
tokens: anything else is answered as missing before it reaches the
database, where some values (a NUL byte) would be a driver error rather
than "no such row". A `client_id` is the sender's UUID for an idempotent
send. The wire layer bounds a frame's fields by `MAX_ID_CHARS` (shape); the
domain checks meaning here.
"""

from __future__ import annotations

import re
import uuid

from chatserver.errors import invalid, not_found

HOST_ID_MAX_CHARS = 128
HOST_ID = re.compile(rf"[A-Za-z0-9._:@-]{{1,{HOST_ID_MAX_CHARS}}}")
OUR_ID_MAX_CHARS = 64
OUR_ID = re.compile(rf"[0-9A-Za-z_-]{{1,{OUR_ID_MAX_CHARS}}}")
# The longest id of any kind: what a frame's id fields may hold at all.
MAX_ID_CHARS = max(HOST_ID_MAX_CHARS, OUR_ID_MAX_CHARS)
# A UUID's longest spelling (with braces and urn:uuid:) is 45 characters.
CLIENT_ID_MAX_CHARS = 64


def host_id(value: object, what: str) -> str:
    """A host id, or `invalid` naming the field."""
    if not isinstance(value, str) or not HOST_ID.fullmatch(value):
        raise invalid(
            f"{what} must be 1-{HOST_ID_MAX_CHARS} characters of letters, digits and . _ : @ -"
        )
    return value


def plausible_id(value: object) -> bool:
    """Whether `value` could be one of our ids (else: answer `not_found`)."""
    return isinstance(value, str) and OUR_ID.fullmatch(value) is not None


def our_id(value: str, what: str = "conversation") -> str:
    """One of our ids, or `not_found` naming the thing: an id that could
    not be ours is answered like one that is not stored."""
    if not plausible_id(value):
        raise not_found(what)
    return value


def is_client_id(value: object) -> bool:
    if not isinstance(value, str) or len(value) > CLIENT_ID_MAX_CHARS:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def client_id(value: object) -> str:
    """The client id in its canonical spelling, or `invalid`."""
    if not is_client_id(value):
        raise invalid("client_id must be a UUID.")
    return str(uuid.UUID(str(value)))
