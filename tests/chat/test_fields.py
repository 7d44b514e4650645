"""The host's fields are refused in words that say what to do: a field
left out is required (whichever field), a wrong one says what it must be."""

from __future__ import annotations

import pytest

from chatserver.chat import fields
from chatserver.errors import ChatError, ErrorCode


def refusal(check: object, *args: object) -> str:
    with pytest.raises(ChatError) as raised:
        check(*args)  # type: ignore[operator]
    assert raised.value.code == ErrorCode.INVALID
    return raised.value.message


def test_a_missing_field_is_required_whatever_its_kind() -> None:
    assert refusal(fields.check_text, None, "name", 200) == "name is required."
    assert refusal(fields.check_email, None, "candidate.email") == "candidate.email is required."
    assert refusal(fields.parse_time, None, "applied_at") == "applied_at is required."


def test_a_wrong_timestamp_shows_the_form_it_must_take() -> None:
    for wrong in (1700000000, "yesterday", "2026-13-01T00:00:00Z"):
        message = refusal(fields.parse_time, wrong, "applied_at")
        assert message.startswith(
            "applied_at must be an ISO 8601 timestamp such as 2026-11-02T09:30:00Z"
        )
