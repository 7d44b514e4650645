"""The log format every process shares, and the redaction that keeps
sign-in tokens out of every line (the real-server test is in
test_serve.py; these try the formatter with every kind of token)."""

from __future__ import annotations

import json
import logging
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from chatserver.chat.reply_tokens import ReplyTokens
from chatserver.chat.signing import Signer
from chatserver.logs import REDACTED, REQUEST_ID, ContextFilter, JsonLineFormatter, TextFormatter
from chatserver.logs import redact as redact_text
from chatserver.notify.unsubscribe import Recipient, UnsubscribeLinks
from chatserver.settings import Settings

SETTINGS = Settings(secret_keys=("log-test-secret-0123456789",))
SIGNER = Signer(SETTINGS)
UNSUBSCRIBE = UnsubscribeLinks(SETTINGS)
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.:@", min_size=1, max_size=40)


def _record(message: str, *args: object, name: str = "uvicorn.access") -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)
    ContextFilter("web").filter(record)
    return record


@given(staff=IDS, application=IDS, candidate=IDS)
@settings(max_examples=60, deadline=None)
def test_no_signed_token_survives_a_log_line(staff: str, application: str, candidate: str) -> None:
    staff_token, _ = SIGNER.staff_link_token(staff)
    candidate_token = SIGNER.candidate_link_token(application, candidate)
    unsubscribe_token = UNSUBSCRIBE.token(Recipient("candidate", candidate))
    for token, path in (
        (staff_token, f"/auth/staff?token={staff_token}"),
        (candidate_token, f"/auth/candidate?token={candidate_token}"),
        (candidate_token, f"/unsubscribe/{candidate_token}"),
        (candidate_token, f"/x?a=1&token={candidate_token}&b=2"),
        (unsubscribe_token, f"/email/unsubscribe?token={unsubscribe_token}"),
    ):
        for formatter in (TextFormatter(), JsonLineFormatter()):
            line = formatter.format(
                _record('%s - "GET %s HTTP/1.1" %d', "127.0.0.1:5000", path, 303)
            )
            assert token not in line
            assert REDACTED in line


@given(address_id=st.binary(min_size=8, max_size=8), generation=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_no_reply_address_token_survives_a_log_line(address_id: bytes, generation: int) -> None:
    """What aiosmtpd logs of mail-in's envelope (at debug), and anything
    else that names a reply address, keeps the address's token out."""
    tokens = ReplyTokens(SETTINGS.with_(reply_domain="reply.example.com"))
    address = tokens.address(address_id.hex(), generation)
    token = address.split("@")[0].removeprefix("reply+")
    for text in (
        f"('127.0.0.1', 40000) recip: {address}",
        f"('127.0.0.1', 40000) >> b'RCPT TO:<{address.upper()}>'",
    ):
        for formatter in (TextFormatter(), JsonLineFormatter()):
            line = formatter.format(_record("%s", text, name="mail.log"))
            assert token not in line.lower()
            assert f"reply+{REDACTED}@reply.example.com" in line.lower()


def test_other_credentials_in_query_strings_are_redacted() -> None:
    for query in (
        "csrf_token=abc123",
        "key=k-1-secret",
        "sig=s1g-value",
        "password=hunter2",
        "api_token=t0ken-value",
    ):
        line = redact_text(f"GET /path?{query}&page=2 HTTP/1.1")
        assert query.split("=")[1] not in line
        assert "page=2" in line


def test_ordinary_lines_are_left_alone() -> None:
    for text in (
        'GET /api/conversations/d9f7f3201aa02d52/messages?before=20&limit=50 HTTP/1.1" 200',
        "database is up to date (revision 0003)",
        "2026-11-22T15:34:05.675Z sent 3 emails",
        "reply by email taken in conversation d9f7f3201aa02d52 (seq 4)",
        "mail-in listening on 127.0.0.1:2525 for *@reply.example.com",
    ):
        assert redact_text(text) == text


def test_a_text_line_has_time_level_role_pid_logger_and_request_id() -> None:
    token = REQUEST_ID.set("3f9c2a1b0d4e5f67")
    try:
        line = TextFormatter().format(_record("notifier started", name="chatserver.notify"))
    finally:
        REQUEST_ID.reset(token)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO web\[\d+\] chatserver\.notify "
        r"req=3f9c2a1b0d4e5f67 notifier started",
        line,
    ), line


def test_a_json_line_has_the_same_fields() -> None:
    made = _record("hello %s", "world", name="x")
    # What uvicorn passes for its own coloured formatter: not a field here.
    made.color_message = "\x1b[32mhello world\x1b[0m"
    record = json.loads(JsonLineFormatter().format(made))
    assert set(record) == {"time", "level", "role", "process", "logger", "request_id", "message"}
    assert record["message"] == "hello world"
    assert record["level"] == "INFO"
    assert record["role"] == "web"
    assert record["logger"] == "x"
    assert record["request_id"] == "-"
    assert isinstance(record["process"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
