"""One log set-up for every process: `serve` (each worker), `notifier`,
`migrate`, `demo` and `check` all write the same line format.

A line carries a UTC timestamp, the level, the process's role and pid (so
the lines of several workers can be told apart), the logger, the request id
of the HTTP request it belongs to (or `-`) and the message:

    2026-12-01T15:11:44.123Z INFO web[4242] chatserver.notify.worker req=- notifier started

`CHAT_LOG_FORMAT=json` writes the same fields as one JSON object per line
(python-json-logger), for log shippers.

Sign-in tokens never reach a log line: every formatter passes the finished
line (exception text included) through `redact`, which removes the values of
token-like query parameters, anything shaped like a signed token, and the
token of a reply address (`reply+<token>@…`, which posts as its person). Doing it
in the formatter rather than at each call covers uvicorn's access log and
any library that logs a URL.
"""

from __future__ import annotations

import logging
import logging.config
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from chatserver.settings import Settings

# The id of the HTTP request being served (chatserver/web/request_id.py sets
# it); `-` outside a request.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")

REDACTED = "[redacted]"
# Query parameters that carry a credential: `?token=`, `&csrf_token=`, `sig=`…
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z_]*token|sig|signature|key|password|secret)=)[^&\s\"'#]*",
    re.IGNORECASE,
)
# A signed itsdangerous token wherever it appears (a path segment, a cookie
# echoed in an error): base64 payload, timestamp and signature joined by dots.
_SIGNED_TOKEN = re.compile(r"\.?[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,10}\.[A-Za-z0-9_-]{20,}")

# The token of a reply address (chat/reply_tokens.py), in any case: mail
# systems may change it, and aiosmtpd logs the envelope as received.
_REPLY_TOKEN = re.compile(r"(?P<local>\breply\+)[A-Za-z2-7]{16,}", re.IGNORECASE)

TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(role)s[%(process)d] %(name)s req=%(request_id)s %(message)s"
)
JSON_FIELDS = "%(asctime)s %(levelname)s %(role)s %(process)d %(name)s %(request_id)s %(message)s"
# The keys of a JSON line: those fields as renamed below, and a traceback's.
JSON_KEYS = frozenset(
    {"time", "level", "role", "process", "logger", "request_id", "message", "exc_info"}
)

# Loggers of libraries that speak at INFO about things an operator does not
# need on every start: alembic's "Context impl PostgresqlImpl" and
# "Will assume transactional DDL" lines, for instance. They follow the
# chosen level only at debug.
# aiosmtpd ("mail.log") tells every connection and SMTP command of mail-in.
_CHATTY = ("alembic", "alembic.runtime.migration", "httpx", "aiosmtplib", "mail.log")


def redact(text: str) -> str:
    """`text` without credentials: token values and signed tokens removed."""
    text = _SECRET_PARAM.sub(lambda m: m.group("name") + REDACTED, text)
    text = _REPLY_TOKEN.sub(lambda m: m.group("local") + REDACTED, text)
    return _SIGNED_TOKEN.sub(REDACTED, text)


def _utc(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class ContextFilter(logging.Filter):
    """Adds `role` (web, notifier, migrate…) and `request_id` to every record."""

    def __init__(self, role: str = "chatserver") -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line, with the text format's fields."""

    def __init__(self) -> None:
        super().__init__(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        """The text format's fields and an exception's text, nothing else:
        python-json-logger would add every `extra` a library passes, such as
        uvicorn's `color_message`, the message with terminal colour codes."""
        return {key: value for key, value in log_record.items() if key in JSON_KEYS}

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def config_dict(settings: Settings, role: str, *, verbose: bool = False) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a process. uvicorn takes it as
    `log_config` and applies it in each worker, so workers log as the
    supervisor does. `verbose` (`--verbose`) lets the migrations tell each
    step, as CHAT_LOG_LEVEL=debug does."""
    level = settings.log_level.upper()
    formatter = "json" if settings.log_format == "json" else "text"
    quiet = level if level == "DEBUG" else ("INFO" if verbose else "WARNING")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter, "role": role}},
        "formatters": {
            "text": {"()": TextFormatter},
            "json": {"()": JsonLineFormatter},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": formatter,
                "filters": ["context"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn installs handlers of its own unless told otherwise:
            # its loggers propagate to the root's one handler instead.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": level, "handlers": [], "propagate": True},
            **{name: {"level": quiet, "propagate": True} for name in _CHATTY},
        },
    }


def configure(settings: Settings, role: str, *, verbose: bool = False) -> None:
    """Set up logging for this process (the CLI calls it first thing)."""
    logging.config.dictConfig(config_dict(settings, role, verbose=verbose))
