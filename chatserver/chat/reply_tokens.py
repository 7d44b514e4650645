"""Reply addresses: `reply+<token>@<CHAT_REPLY_DOMAIN>`, signed and short.

A reply address names one person in one conversation (a `reply_addresses`
row) and must fit in the 64 characters RFC 5321 allows before the `@`, so
the token is binary and compact rather than itsdangerous's JSON:

    row id (8 bytes) | signed at, ms (6 bytes) | generation (4 bytes) | MAC (10 bytes)

in lower-case base32: 45 characters, 51 with `reply+`. Base32 because mail
systems may change the case of a local part; lower case because that is how
people see addresses. The MAC is HMAC-SHA256 truncated to 80 bits under a
key derived from each of `CHAT_SECRET_KEYS` with a salt of its own, so it is
never valid as any other token: the first key signs, every key verifies, and
dropping a key revokes every address it signed. Guessing a MAC online (one
try per SMTP `RCPT TO`) is hopeless at 2^-80 a try.

The token expires with the candidate link (`candidate_link_seconds`, 30
days), and carries when it was signed (milliseconds, to compare with when a
candidate was given the application, as candidate links do) and the staff
member's session generation (signing out or removal moves it on). Checking
those bindings needs the database: `reply_address.resolve` does it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chatserver.clock import Clock, utcnow
from chatserver.errors import ChatError, ErrorCode
from chatserver.settings import Settings

SALT = b"chat.reply-address"
LOCAL = "reply"
ID_BYTES = 8
TIME_BYTES = 6
GENERATION_BYTES = 4
MAC_BYTES = 10
PAYLOAD_BYTES = ID_BYTES + TIME_BYTES + GENERATION_BYTES
TOKEN_BYTES = PAYLOAD_BYTES + MAC_BYTES
# RFC 5321: a local part has at most 64 octets.
LOCAL_PART_MAX = 64
# A token signed this far in the future (another machine's clock) still
# verifies; one further ahead was not made by us.
CLOCK_SKEW = timedelta(minutes=5)


def no_such_address(message: str = "This reply address is not valid.") -> ChatError:
    """Forged, expired, revoked or not a reply address at all: one answer
    code, like any other thing that does not exist."""
    return ChatError(ErrorCode.NOT_FOUND, message)


@dataclass(frozen=True)
class ReplyToken:
    """A verified token: which `reply_addresses` row, signed when, and the
    staff member's session generation then (0 for candidates)."""

    address_id: str
    signed_at: datetime
    generation: int


def _derived(secret: str) -> bytes:
    return hmac.new(secret.encode(), SALT, hashlib.sha256).digest()


class ReplyTokens:
    def __init__(self, settings: Settings, clock: Clock = utcnow) -> None:
        self._keys = [_derived(k) for k in settings.secret_keys]
        self._domain = settings.reply_domain
        self._max_age = timedelta(seconds=settings.candidate_link_seconds)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._domain)

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]

    def token(self, address_id: str, generation: int = 0) -> str:
        raw_id = bytes.fromhex(address_id)
        if len(raw_id) != ID_BYTES:
            raise ValueError("a reply address id is 8 bytes of hex")
        signed_ms = int(self._clock().timestamp() * 1000)
        payload = (
            raw_id
            + signed_ms.to_bytes(TIME_BYTES, "big")
            + (generation % 2**32).to_bytes(GENERATION_BYTES, "big")
        )
        mac = self._mac(self._keys[0], payload)
        return base64.b32encode(payload + mac).decode().rstrip("=").lower()

    def address(self, address_id: str, generation: int = 0) -> str:
        """The full reply address for a `reply_addresses` row."""
        local = f"{LOCAL}+{self.token(address_id, generation)}"
        assert len(local) <= LOCAL_PART_MAX
        return f"{local}@{self._domain}"

    def is_ours(self, address: str) -> bool:
        """Whether `address` has the shape of a reply address on our domain
        (its token unchecked)."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        return (
            bool(self._domain)
            and domain.lower() == self._domain
            and local.lower().startswith(f"{LOCAL}+")
        )

    def read(self, address: str) -> ReplyToken:
        """The verified token of a reply address, or `not_found`."""
        if not self.is_ours(address):
            raise no_such_address("This is not a reply address.")
        local = address.strip().strip("<>").rpartition("@")[0]
        text = local[len(LOCAL) + 1 :].upper()
        if len(text) > LOCAL_PART_MAX:
            raise no_such_address()
        try:
            raw = base64.b32decode(text + "=" * (-len(text) % 8))
        except (binascii.Error, ValueError) as exc:
            raise no_such_address() from exc
        if len(raw) != TOKEN_BYTES:
            raise no_such_address()
        payload, mac = raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]
        if not any(hmac.compare_digest(self._mac(k, payload), mac) for k in self._keys):
            raise no_such_address()
        signed_ms = int.from_bytes(payload[ID_BYTES : ID_BYTES + TIME_BYTES], "big")
        signed_at = datetime.fromtimestamp(signed_ms / 1000, UTC)
        now = self._clock()
        if signed_at > now + CLOCK_SKEW:
            raise no_such_address()
        if now - signed_at > self._max_age:
            raise no_such_address("This reply address has expired.")
        return ReplyToken(
            address_id=payload[:ID_BYTES].hex(),
            signed_at=signed_at,
            generation=int.from_bytes(payload[ID_BYTES + TIME_BYTES :], "big"),
        )
