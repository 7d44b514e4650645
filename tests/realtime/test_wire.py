"""SPEC 5's client frames decode into typed frames; anything else is `invalid`."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatserver.chat import wire
from chatserver.errors import ChatError, ErrorCode

CID = "5b0d2f4e-8c1a-4f7e-9a3b-2d6c1e0f4a7b"  # fixed: test ids name it


def raw(frame: Any) -> str:
    return json.dumps(frame)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "subscribe", "conversation": "c1", "after": 7}, wire.Subscribe("c1", 7)),
        ({"type": "subscribe", "conversation": "c1"}, wire.Subscribe("c1", 0)),
        ({"type": "unsubscribe", "conversation": "c1"}, wire.Unsubscribe("c1")),
        (
            {"type": "send", "conversation": "c1", "client_id": CID, "body": "hi"},
            wire.Send("c1", CID, "hi", ()),
        ),
        (
            {
                "type": "send",
                "conversation": "c1",
                "client_id": CID,
                "body": "",
                "attachments": ["a1", "a2"],
            },
            wire.Send("c1", CID, "", ("a1", "a2")),
        ),
        ({"type": "read", "conversation": "c1", "seq": 3}, wire.Read("c1", 3)),
        ({"type": "typing", "conversation": "c1"}, wire.Typing("c1")),
        ({"type": "inbox"}, wire.Inbox()),
        ({"type": "ping"}, wire.Ping()),
        ({"type": "ping", "extra": [1, 2]}, wire.Ping()),
    ],
)
def test_every_client_frame_decodes(frame: dict[str, Any], expected: wire.ClientFrame) -> None:
    assert wire.decode(raw(frame)) == expected
    assert wire.decode(raw(frame).encode()) == expected


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("not json", "JSON object"),
        ("[1, 2]", "JSON object"),
        ('"ping"', "JSON object"),
        ("{}", "`type`"),
        ('{"type": 5}', "`type`"),
        ('{"type": "dance"}', "Unknown frame type"),
        ('{"type": "subscribe"}', "`conversation`"),
        ('{"type": "subscribe", "conversation": 12}', "`conversation`"),
        ('{"type": "subscribe", "conversation": ""}', "`conversation`"),
        (raw({"type": "subscribe", "conversation": "x" * 129}), "`conversation`"),
        ('{"type": "subscribe", "conversation": "c", "after": -1}', "`after`"),
        ('{"type": "subscribe", "conversation": "c", "after": true}', "`after`"),
        ('{"type": "subscribe", "conversation": "c", "after": 1.5}', "`after`"),
        ('{"type": "subscribe", "conversation": "c", "after": "3"}', "`after`"),
        (raw({"type": "subscribe", "conversation": "c", "after": 2**53}), "`after`"),
        ('{"type": "read", "conversation": "c"}', "`seq`"),
        ('{"type": "read", "conversation": "c", "seq": false}', "`seq`"),
        ('{"type": "typing"}', "`conversation`"),
        ('{"type": "unsubscribe", "conversation": null}', "`conversation`"),
    ],
)
def test_malformed_frames_are_invalid(data: str, fragment: str) -> None:
    with pytest.raises(wire.InvalidFrame) as caught:
        wire.decode(data)
    assert caught.value.code is ErrorCode.INVALID
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("frame", "echo"),
    [
        ({"client_id": "nope"}, "nope"),
        ({"client_id": 5}, None),
        ({"client_id": "x" * 65}, None),
        ({"client_id": CID, "body": 5}, CID),
        ({"client_id": CID, "attachments": "a1"}, CID),
        ({"client_id": CID, "attachments": [1]}, CID),
        ({"client_id": CID, "attachments": ["a"] * 65}, CID),
        ({"client_id": CID, "conversation": 7}, CID),
    ],
)
def test_bad_sends_echo_the_client_id_when_it_is_a_short_string(
    frame: dict[str, Any], echo: str | None
) -> None:
    payload = {"type": "send", "conversation": "c1", "body": "hi", **frame}
    with pytest.raises(wire.InvalidFrame) as caught:
        wire.decode(raw(payload))
    assert caught.value.client_id == echo


def test_error_frames_carry_code_message_client_id_and_retry() -> None:
    limited = ChatError(ErrorCode.RATE_LIMITED, "slow down", retry_after_ms=250)
    assert orjson.loads(wire.error_frame(limited, CID)) == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
        "retry_after_ms": 250,
        "client_id": CID,
    }
    assert orjson.loads(wire.error_frame(wire.InvalidFrame("bad"))) == {
        "type": "error",
        "code": "invalid",
        "message": "bad",
    }


def test_server_frames_have_the_spec_shapes() -> None:
    message = {"id": "m", "seq": 1}
    assert orjson.loads(wire.subscribed_frame("c", 4, "open", True)) == {
        "type": "subscribed",
        "conversation": "c",
        "last_seq": 4,
        "state": "open",
        "can_send": True,
    }
    assert orjson.loads(wire.ack_frame(CID, message)) == {
        "type": "ack",
        "client_id": CID,
        "message": message,
    }
    assert orjson.loads(wire.message_frame(message)) == {"type": "message", "message": message}
    cara = {"id": "cara", "name": "Cara"}
    assert orjson.loads(wire.inbox_frame("c", 2, None, "ended", "hired", cara)) == {
        "type": "inbox",
        "conversation": "c",
        "unread": 2,
        "last_message": None,
        "state": "ended",
        "status": "hired",
        "candidate": cara,
    }
    assert orjson.loads(wire.PONG) == {"type": "pong"}


FRAME_TYPES_NAMES = ["subscribe", "unsubscribe", "send", "read", "typing", "inbox", "ping"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from([*FRAME_TYPES_NAMES, "other"]) | st.text(max_size=10)},
    optional={
        "conversation": json_values,
        "after": json_values,
        "seq": json_values,
        "client_id": st.just(CID) | json_values,
        "body": json_values,
        "attachments": json_values,
    },
)


def outcome(data: str | bytes) -> wire.ClientFrame | wire.InvalidFrame:
    try:
        return wire.decode(data)
    except wire.InvalidFrame as exc:
        return exc


FRAME_TYPES = {
    "subscribe": wire.Subscribe,
    "unsubscribe": wire.Unsubscribe,
    "send": wire.Send,
    "read": wire.Read,
    "typing": wire.Typing,
    "inbox": wire.Inbox,
    "ping": wire.Ping,
}


@settings(max_examples=400, deadline=None)
@given(frame_like)
def test_any_json_object_decodes_to_its_type_or_is_invalid(frame: dict[str, Any]) -> None:
    result = outcome(raw(frame))
    if isinstance(result, wire.InvalidFrame):
        assert result.code is ErrorCode.INVALID
        assert result.message
    else:
        assert isinstance(result, FRAME_TYPES[frame["type"]])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_data_never_escapes_as_anything_but_invalid(data: bytes | str) -> None:
    result = outcome(data)
    assert isinstance(result, wire.InvalidFrame | wire.Ping | wire.Inbox)
