"""The notifier's Prometheus metrics (exposed by the app's /metrics on the
default registry; a standalone notifier's counters live in its own process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EMAILS_PLANNED = Counter(
    "chat_emails_planned", "Emails recorded for sending", ["kind"]
)  # kind: message | digest
EMAILS_SENT = Counter("chat_emails_sent", "Emails accepted by the transport")
EMAILS_CANCELLED = Counter(
    "chat_emails_cancelled", "Emails dropped because the messages were read before sending"
)
EMAIL_RETRIES = Counter("chat_email_retries", "Temporary send failures, retried with backoff")
EMAILS_FAILED = Counter(
    "chat_emails_failed", "Emails given up on (permanent failure or too many tries)"
)
EMAIL_ERRORS = Counter(
    "chat_email_errors",
    "Failures to compose or send one email, per try (each is recorded on its email)",
    ["stage"],
)  # stage: compose | deliver
EMAIL_BACKLOG = Gauge("chat_email_backlog", "Emails recorded and not yet sent")
