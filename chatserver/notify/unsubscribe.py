"""One-click unsubscribe links (RFC 8058, SPEC section 7).

Every email carries a link signed for its recipient (kind and id) that
needs no sign-in: opening it shows a page to choose how often to be
emailed, and a POST to it (from that page, or from the mail client's
"Unsubscribe" button with `List-Unsubscribe=One-Click`) changes the
setting. The signature is the whole authorisation, so the link stays
valid as long as the email may be read (it carries no expiry); dropping a
key from CHAT_SECRET_KEYS revokes the links it signed, as for every other
link.

The worst a leaked link can do is change one person's email setting,
which they can change back; it signs nobody in.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer

from chatserver.roles import Role
from chatserver.settings import Settings

SALT = "chat.unsubscribe"
PATH = "/email/unsubscribe"
KINDS = tuple(Role)


@dataclass(frozen=True)
class Recipient:
    kind: str  # staff | candidate
    id: str


class UnsubscribeLinks:
    def __init__(self, settings: Settings) -> None:
        # itsdangerous signs with the last key and verifies with all;
        # CHAT_SECRET_KEYS lists the signing key first.
        self._serializer = URLSafeSerializer(list(reversed(settings.secret_keys)), salt=SALT)
        self._base_url = settings.base_url

    def token(self, recipient: Recipient) -> str:
        return str(self._serializer.dumps([recipient.kind, recipient.id]))

    def url(self, recipient: Recipient) -> str:
        return f"{self._base_url}{PATH}?{urlencode({'token': self.token(recipient)})}"

    def read(self, token: str) -> Recipient | None:
        """The recipient a token was signed for, or None for anything forged,
        damaged or signed with a key no longer listed."""
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            return None
        if (
            not isinstance(data, list)
            or len(data) != 2
            or data[0] not in KINDS
            or not isinstance(data[1], str)
        ):
            return None
        return Recipient(data[0], data[1])
