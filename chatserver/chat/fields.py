"""What a value given by the host or by a person may be: names and titles,
email addresses, time zones, notification choices and timestamps.

The domain's one statement of each (the web layer only checks a body's
shape); each check answers `invalid` naming the field.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

from chatserver.errors import invalid

NOTIFICATION_SETTINGS = ("each", "daily", "off")
# The zones Python finds, less two that browsers refuse (Intl.DateTimeFormat
# throws a RangeError, and every time on the pages failed with it): the
# machine's own `localtime` (a file of the system's zoneinfo, not an IANA
# name) and the tz database's `Factory` placeholder.
NOT_ZONES = frozenset({"localtime", "Factory"})
TIMEZONES = frozenset(available_timezones()) - NOT_ZONES
# Unicode categories refused in names and titles: control characters (CR
# and LF among them, which would split an email header) and the line and
# paragraph separators, which do the same in some mail software.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
# The bidi embeddings, overrides and isolates: a name never needs them, and
# one left open turns what follows it around wherever the name is shown (a
# subject "Cara\u202e sent 2 messages about Physics", a file "cv\u202efdp.exe"
# in the bell). The marks (U+200E, U+200F) that RTL names may carry are kept.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# The longest address RFC 5321 lets through (and what the column holds).
EMAIL_MAX_CHARS = 320


@dataclass(frozen=True)
class PersonDefaults:
    """The host's defaults for a person's own settings: written until the
    person chooses in Settings; None (left out) keeps the stored value."""

    timezone: str | None = None
    notifications: str | None = None


def check_timezone(value: object) -> str:
    if not isinstance(value, str) or value not in TIMEZONES:
        raise invalid("timezone must be an IANA time zone name such as Europe/London.")
    return value


def check_notifications(value: object) -> str:
    if value not in NOTIFICATION_SETTINGS:
        raise invalid("email_notifications must be 'each', 'daily' or 'off'.")
    return str(value)


def _require(value: object, what: str) -> None:
    """A field the host left out (or sent as null) is said to be required,
    the same for every field, rather than of the wrong type."""
    if value is None:
        raise invalid(f"{what} is required.")


def check_text(value: object, what: str, max_len: int) -> str:
    """A name or title: 1-max_len characters, no control characters (they
    would end up in email headers and page titles) nor bidi overrides,
    outer spaces dropped."""
    _require(value, what)
    if not isinstance(value, str):
        raise invalid(f"{what} must be a string.")
    if not value.strip() or len(value) > max_len:
        raise invalid(f"{what} must be 1-{max_len} characters.")
    if any(unicodedata.category(c) in CONTROL_CATEGORIES for c in value):
        raise invalid(f"{what} must not contain control characters or line breaks.")
    if any(c in BIDI_CONTROLS for c in value):
        raise invalid(f"{what} must not contain bidi override, embedding or isolate characters.")
    return value.strip()


def check_email(value: object, what: str = "email") -> str:
    """Exactly one deliverable address, in the form the notifier sends to.

    `email-validator` refuses lists, display names, quoting and anything
    else that is not one plain address. An internationalised domain is kept
    in its IDNA (ASCII) form, which every mail server accepts; a non-ASCII
    local part would need SMTPUTF8, which the notifier does not speak, so it
    is refused here rather than accepted and failing at send time.
    """
    _require(value, what)
    if not isinstance(value, str) or not value or len(value) > EMAIL_MAX_CHARS:
        raise invalid(f"{what} must be an email address of at most {EMAIL_MAX_CHARS} characters.")
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise invalid(f"{what} must be exactly one email address: {exc}") from exc
    address = checked.ascii_email
    if address is None or len(address) > EMAIL_MAX_CHARS:
        raise invalid(f"{what} must be an email address the notifier can deliver.")
    return str(address)


def parse_time(value: object, what: str) -> datetime:
    """An ISO 8601 timestamp from the host; one without an offset is UTC.

    A valid timestamp whose UTC instant falls outside the years 1-9999
    (`0001-01-01T00:00:00+14:00`) cannot be represented: `invalid`.
    """
    _require(value, what)
    if not isinstance(value, str):
        raise invalid(f"{what} must be an ISO 8601 timestamp such as 2026-11-02T09:30:00Z.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise invalid(
            f"{what} must be an ISO 8601 timestamp such as 2026-11-02T09:30:00Z,"
            " in the years 1-9999."
        ) from exc
